//! Fuzz target `mobi`: the MOBI/AZW3 parser (PalmDB records, PalmDoc
//! decompression, EXTH). The harness is the daemon's fuzzing facade, which the
//! regression test replays findings through.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    mindory_daemon::fuzzing::run("mobi", bytes);
});
