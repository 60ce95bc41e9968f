//! Fuzz target `text`: text decoding (BOMs, UTF-16 sniffing, legacy encodings),
//! the plain-text parser, and format detection. The harness is the daemon's
//! fuzzing facade, which the regression test replays findings through.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    mindory_daemon::fuzzing::run("text", bytes);
});
