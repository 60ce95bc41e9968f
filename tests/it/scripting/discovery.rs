//! Finding and probing the daemon with stock gRPC tooling, over its socket:
//! the standard health service (tonic-health's client: SERVING while up,
//! NOT_SERVING once shutdown begins), server reflection (tonic-reflection's
//! v1 client: the services listed, the Search RPC resolved to its file
//! descriptor), and `examples/python/mindory_reflect.py`, which calls the
//! API from descriptors it got by reflection alone.

use std::time::Duration;

use prost::Message as _;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

use super::{grpc_python, repo};
use crate::support::{fixture, TestDaemon};

const MINDORY_SERVICES: [&str; 5] = [
    "mindory.v1.Daemon",
    "mindory.v1.Library",
    "mindory.v1.Search",
    "mindory.v1.Events",
    "mindory.v1.Assistant",
];

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest { service: service.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_serves_while_up_and_not_serving_once_shutdown_begins() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(tmp.path()).await;
    let mut health = HealthClient::new(daemon.channel().await);
    for service in std::iter::once("").chain(MINDORY_SERVICES) {
        let status = health.check(check(service)).await.expect("check").into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health.check(check("mindory.v1.Nope")).await.expect_err("not a service");
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");

    // A watcher hears SERVING now and NOT_SERVING when shutdown begins; its
    // stream then ends, so it does not hold up the graceful stop.
    let mut watch = health.watch(check("")).await.expect("watch").into_inner();
    let first = watch.message().await.expect("first status").expect("a status");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let stopping = tokio::spawn(daemon.stop());
    let next = tokio::time::timeout(Duration::from_secs(60), watch.message())
        .await
        .expect("NOT_SERVING within 60 s")
        .expect("the stream carries it")
        .expect("a status");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    let end = tokio::time::timeout(Duration::from_secs(60), watch.message())
        .await
        .expect("the watch ends within 60 s");
    assert!(matches!(end, Ok(None)), "the watch ends cleanly: {end:?}");
    tokio::time::timeout(Duration::from_secs(120), stopping)
        .await
        .expect("the daemon stops within 120 s with a watcher connected")
        .expect("daemon task");
}

/// One reflection request on the v1 stream; returns its answer, or the
/// status that ended the stream.
async fn reflect(
    client: &mut ServerReflectionClient<tonic::transport::Channel>,
    request: MessageRequest,
) -> Result<MessageResponse, tonic::Status> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection stream")
        .into_inner();
    let answer = answers.message().await?.expect("one answer");
    Ok(answer.message_response.expect("a response"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reflection_lists_the_services_and_describes_search() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(tmp.path()).await;
    let mut client = ServerReflectionClient::new(daemon.channel().await);

    let MessageResponse::ListServicesResponse(list) = reflect(&mut client, MessageRequest::ListServices(String::new()))
        .await
        .expect("list")
    else {
        panic!("not a service list");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in MINDORY_SERVICES
        .into_iter()
        .chain(["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"])
    {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }

    let MessageResponse::FileDescriptorResponse(files) =
        reflect(&mut client, MessageRequest::FileContainingSymbol("mindory.v1.Search.Search".into()))
            .await
            .expect("file containing Search")
    else {
        panic!("no file descriptor for the Search RPC");
    };
    let files: Vec<prost_types::FileDescriptorProto> = files
        .file_descriptor_proto
        .iter()
        .map(|b| prost_types::FileDescriptorProto::decode(b.as_slice()).expect("a file descriptor"))
        .collect();
    let file = files.iter().find(|f| f.package() == "mindory.v1").expect("the mindory.v1 file");
    let search = file.service.iter().find(|s| s.name() == "Search").expect("service Search");
    let rpc = search.method.iter().find(|m| m.name() == "Search").expect("rpc Search");
    assert_eq!(
        (rpc.input_type(), rpc.output_type()),
        (".mindory.v1.SearchRequest", ".mindory.v1.SearchResponse")
    );
    let request = file
        .message_type
        .iter()
        .find(|m| m.name() == "SearchRequest")
        .expect("SearchRequest described");
    let fields: Vec<&str> = request.field.iter().map(|f| f.name()).collect();
    assert_eq!(fields, ["query", "k", "book_ids", "mode", "expansion"]);

    // An unknown symbol is NOT_FOUND (tonic's reflection ends the stream
    // with it rather than answering with an error message).
    let unknown = reflect(&mut client, MessageRequest::FileContainingSymbol("mindory.v1.Nope".into())).await;
    match unknown {
        Err(status) => assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}"),
        Ok(MessageResponse::ErrorResponse(e)) => assert_eq!(e.error_code, tonic::Code::NotFound as i32, "{e:?}"),
        Ok(other) => panic!("an unknown symbol was found: {other:?}"),
    }
    daemon.stop().await;
}

/// The documented reflection example: stock grpcio, grpcio-reflection and
/// grpcio-health-checking, no stubs generated from the proto.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_discovers_and_calls_the_api_by_reflection_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(tmp.path()).await;
    daemon.add(&[fixture("constitution.txt")]).await;
    daemon.wait_idle(Duration::from_secs(300)).await;
    let python = grpc_python();
    // Run from a folder holding no stubs, so an import of them would fail.
    let work = tmp.path().join("py");
    std::fs::create_dir_all(&work).unwrap();
    let script = repo().join("examples/python/mindory_reflect.py");
    let stdout = super::run_script(
        &python,
        &script,
        &daemon.socket,
        &work,
        None,
        &["--search".as_ref(), "How old must a senator be?".as_ref()],
    )
    .await;
    for expected in [
        "health: SERVING",
        "  mindory.v1.Search",
        "  mindory.v1.Daemon",
        "  grpc.health.v1.Health",
        "rpc Search(mindory.v1.SearchRequest) returns (mindory.v1.SearchResponse)",
        "status: 1 books, 40 passages",
        "1. constitution — Section. 3",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    daemon.stop().await;
}
