//! The contract shared by the Mindory daemon and every client.
//!
//! It owns the gRPC wire types generated from `mindory.proto` ([`pb`]), the one
//! [`PROTOCOL_VERSION`], where the socket and the data live by default
//! ([`paths`]), how a client connects to the socket ([`connect`]), and which
//! model files the daemon needs and how to fetch them ([`models`]), and how a
//! place in a book is written for people ([`cite`]), and, behind the `json`
//! feature, the JSON shapes the clients share ([`json`]), how a file path
//! that is not UTF-8 travels as text ([`path_text`]), and the encoded
//! descriptor set that gRPC reflection serves ([`FILE_DESCRIPTOR_SET`]). Keeping
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
/// stays small, large enough that few round trips list it.
pub const BOOKS_PAGE_SIZE: u32 = 500;

/// Version of this build of Mindory, reported by `Hello`.
pub const MINDORY_VERSION: &str = env!("CARGO_PKG_VERSION");

pub use connect::{connect, ConnectError};
