//! The standard gRPC services that let tools find and probe the daemon
//! without Mindory's `.proto`: server reflection (`grpc.reflection.v1` and
//! `v1alpha`, which some grpcurl versions still use) and health checking
//! (`grpc.health.v1.Health`).
//!
//! Health says SERVING for "" (the whole daemon) and for each Mindory
//! service from the moment the socket accepts calls, and NOT_SERVING once
//! shutdown begins; a `Watch` stream then ends, so a watcher never holds up
//! the server's graceful stop.

use std::pin::Pin;

use mindory_proto::pb::{assistant_server, daemon_server, events_server, library_server, search_server};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;

use super::ServeError;

/// The Mindory services, by their full gRPC names: what health reports on
/// besides "" (reflection lists them from the descriptors).
pub(super) const SERVICES: [&str; 5] = [
    daemon_server::SERVICE_NAME,
    library_server::SERVICE_NAME,
    search_server::SERVICE_NAME,
    events_server::SERVICE_NAME,
    assistant_server::SERVICE_NAME,
];

/// Server reflection over Mindory's descriptors and the health service's,
/// in both protocol versions. Each version lists its own reflection service.
pub(super) fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
        tonic_reflection::server::v1alpha::ServerReflectionServer<impl tonic_reflection::server::v1alpha::ServerReflection>,
    ),
    ServeError,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(mindory_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let failed = |e: tonic_reflection::server::Error| ServeError::Reflection(e.to_string());
    Ok((builder().build_v1().map_err(failed)?, builder().build_v1alpha().map_err(failed)?))
}

/// The daemon's health as the health service reports it.
#[derive(Clone)]
pub(super) struct HealthState {
    reporter: HealthReporter,
}

impl HealthState {
    /// Every status starts as NOT_SERVING, "" included: nothing answers
    /// before [`HealthState::serving`].
    pub(super) async fn new() -> Self {
        let state = HealthState {
            reporter: HealthReporter::new(),
        };
        state.set(ServingStatus::NotServing).await;
        state
    }

    /// The daemon and every Mindory service serve.
    pub(super) async fn serving(&self) {
        self.set(ServingStatus::Serving).await;
    }

    /// Shutdown has begun: the daemon and every service stop serving.
    pub(super) async fn not_serving(&self) {
        self.set(ServingStatus::NotServing).await;
    }

    async fn set(&self, status: ServingStatus) {
        for name in std::iter::once("").chain(SERVICES) {
            self.reporter.set_service_status(name, status).await;
        }
    }

    /// The health service; its `Watch` streams end after reporting
    /// NOT_SERVING once `stopping` is true.
    pub(super) fn service(&self, stopping: tokio::sync::watch::Receiver<bool>) -> HealthServer<EndingHealth> {
        HealthServer::new(EndingHealth {
            inner: HealthService::from_health_reporter(self.reporter.clone()),
            stopping,
        })
    }
}

/// tonic's health service, except that a `Watch` stream ends after it has
/// told its client NOT_SERVING during shutdown. tonic's own stream only ends
/// when its reporter is dropped, which happens after the server has stopped,
/// and the server's graceful stop waits for every open stream: the two
/// would wait for each other.
pub(super) struct EndingHealth {
    inner: HealthService,
    stopping: tokio::sync::watch::Receiver<bool>,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for EndingHealth {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let mut statuses = self.inner.watch(request).await?.into_inner();
        let stopping = self.stopping.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = statuses.next() => next,
                    // The client went away: stop waiting for a change.
                    _ = tx.closed() => break,
                };
                let Some(item) = next else { break };
                let last = *stopping.borrow() && matches!(&item, Ok(r) if r.status == WireStatus::NotServing as i32);
                if tx.send(item).await.is_err() || last {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
