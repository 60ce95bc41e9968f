//! Fuzz target `rtf`: the RTF parser. The harness is the daemon's fuzzing
//! facade, which the regression test replays findings through.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    mindory_daemon::fuzzing::run("rtf", bytes);
});
