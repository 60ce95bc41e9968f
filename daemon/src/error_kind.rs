//! The one vocabulary of what went wrong, shared by every error family.
//!
//! Each error enum in the daemon has a `kind()` that says which of these it
//! is, delegating to its source when it wraps another family's error. The
//! RPC layer (`rpc/error.rs`) maps kinds to status codes in one table, so a
//! new error variant needs one `kind()` arm, not a new path through the
//! mapping, and a wrapped "unavailable" cannot fall through to "internal".

/// What kind of failure an error is, independent of which module raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// What the request names (a book, a folder, a conversation) does not exist.
    NotFound,
    /// The request itself is wrong (an empty query, a path that is not a folder).
    Invalid,
    /// A position or range outside what exists (a page past the last).
    OutOfRange,
    /// A part of the daemon is stopping, restarting or failed; a retry may succeed.
    Unavailable,
    /// The request is valid but the daemon is not in a state to serve it yet
    /// (a book still indexing, no model configured, a model swap refused).
    Precondition,
    /// The caller cancelled the request.
    Cancelled,
    /// A bug or a damaged store: nothing the caller can fix.
    Internal,
}
