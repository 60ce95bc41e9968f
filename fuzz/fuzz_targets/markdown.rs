//! Fuzz target `markdown`: the Markdown parser on decoded text. The harness is
//! the daemon's fuzzing facade, which the regression test replays findings
//! through.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    mindory_daemon::fuzzing::run("markdown", bytes);
});
