//! End-to-end tests for Mindory live in `it/` (one test binary); this
//! library target is empty so that the package builds on its own.
