//! The contract shared by the Mindory daemon and every client.
//!
//! It owns the gRPC wire types generated from `mindory.proto` ([`pb`]), the one
//! [`PROTOCOL_VERSION`], where the socket and the data live by default
//! ([`paths`]), how a client connects to the socket ([`connect`]), and which
//! model files the daemon needs and how to fetch them ([`models`]), and how a
//! place in a book is written for people ([`cite`]), and, behind the `json`
//! feature, the JSON shapes the clients share ([`json`]), how a file path
//! that is not UTF-8 travels as text ([`path_text`]), and the encoded
//! descriptor set that gRPC reflection serves ([`FILE_DESCRIPTOR_SET`]), and
//! how many books a client asks for per `ListBooks` page ([`books_page_size`]). Keeping
//! these here means no client re-implements a connector or a path rule.

pub mod cite;
pub mod connect;
#[cfg(feature = "json")]
pub mod json;
pub mod models;
pub mod path_text;
pub mod paths;

/// Generated protobuf and gRPC types for package `mindory.v1`.
///
/// Only the daemon's RPC layer and the clients touch these; the daemon's core
/// works with its own types.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("mindory.v1");
}

/// The encoded `FileDescriptorSet` of `mindory.proto` (package
/// `mindory.v1`), compiled by the build script from the same descriptors as
/// [`pb`]. The daemon's gRPC reflection service serves it, so tools such as
/// grpcurl or Python's reflection client can discover the API without the
/// `.proto` file.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mindory_descriptor.bin"));

/// Version of the wire protocol. Bump it when a change means an old client
/// would misread a new daemon (or the reverse); adding fields does not.
pub const PROTOCOL_VERSION: u32 = 1;

/// Books per `ListBooks` page that clients ask for (the CLI, the desktop
/// app): small enough that one answer of a library of thousands of books
/// stays small, large enough that few round trips list it. Clients read it
/// through [`books_page_size`], which tests can override.
pub const BOOKS_PAGE_SIZE: u32 = 500;

/// Overrides [`BOOKS_PAGE_SIZE`] for the clients when set to a positive
/// number. It exists for tests: a handful of books in pages of 2 is the only
/// way a test can tell a client that walks every page from one that stops
/// after the first.
pub const BOOKS_PAGE_SIZE_ENV: &str = "MINDORY_BOOKS_PAGE_SIZE";

/// The `ListBooks` page size every client asks for: [`BOOKS_PAGE_SIZE`],
/// unless [`BOOKS_PAGE_SIZE_ENV`] is set to a positive number. The
/// variable is read at each call, so a test can set it before listing.
pub fn books_page_size() -> u32 {
    page_size_from(std::env::var(BOOKS_PAGE_SIZE_ENV).ok().as_deref())
}

/// [`books_page_size`] for a given value of the variable. Anything but a
/// positive whole number (unset, empty, 0, text) means the default: 0 would
/// ask the daemon for every book in one answer, which is what paging is
/// there to avoid.
fn page_size_from(value: Option<&str>) -> u32 {
    value
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(BOOKS_PAGE_SIZE)
}

/// Version of this build of Mindory, reported by `Hello`.
pub const MINDORY_VERSION: &str = env!("CARGO_PKG_VERSION");

pub use connect::{connect, ConnectError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_size_knob_takes_only_positive_numbers() {
        assert_eq!(page_size_from(None), BOOKS_PAGE_SIZE);
        assert_eq!(page_size_from(Some("2")), 2);
        assert_eq!(page_size_from(Some(" 7 ")), 7);
        for ignored in ["", "0", "-3", "two", "2.5"] {
            assert_eq!(page_size_from(Some(ignored)), BOOKS_PAGE_SIZE, "{ignored:?}");
        }
    }
}
