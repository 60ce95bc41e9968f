//! Fuzz target `epub`: the EPUB parser (zip, container, OPF, XHTML chapters).
//! The harness is the daemon's fuzzing facade, which the regression test
//! replays findings through.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    mindory_daemon::fuzzing::run("epub", bytes);
});
