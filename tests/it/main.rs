//! End-to-end tests: the real daemon (in-process, through
//! `mindory_daemon::run`), the real embedding model, the real `mindory`
//! binary and real books from `../shared/corpus` and `tests/fixtures`.

mod ask;
mod crash;
mod crash_loop;
mod desktop;
mod disk;
mod every_format;
mod folders;
mod formats_and_failures;
mod library;
mod malformed;
mod pgvector;
mod remote_embed;
mod retrieval;
mod scripting;
mod security;
mod snapshots;
mod socket;
mod support;
mod swap;
mod templates;
