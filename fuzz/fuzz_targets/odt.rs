//! Fuzz target `odt`: the ODT parser (zip, OpenDocument XML). The harness is
//! the daemon's fuzzing facade, which the regression test replays findings
//! through.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    mindory_daemon::fuzzing::run("odt", bytes);
});
