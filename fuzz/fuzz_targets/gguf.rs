//! Fuzz target `gguf`: GGUF metadata read from memory, and the tokenizer and
//! prompt format built from it. The harness is the daemon's fuzzing facade,
//! which the regression test replays findings through.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    mindory_daemon::fuzzing::run("gguf", bytes);
});
