//! Remote embedding end to end: a library embedded through a real
//! OpenAI-compatible server (llama.cpp's, from `scripts/embed-test-server`,
//! serving the same MiniLM weights) answers like one embedded locally; a
//! server that goes away mid-ingest leaves the book waiting, not failed, and
//! it finishes once the server is back; `models use` switches the library
//! to a local model and back to the server's (`remote`); a server that
//! answers garbage fails the book with the endpoint and the reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mindory_daemon::embed::{EmbedBackend, EmbedConfig, Embedder, FastEmbedder, RemoteEmbedder};
use mindory_daemon::llm::fake::{Behaviour, FakeLlm};
use mindory_proto::pb::{self, daemon_client::DaemonClient};

use crate::support::{self, eventually, fixture, TestDaemon};

/// `scripts/embed-test-server start`, killed on drop. Restartable on the
/// same port, so a daemon's `base_url` stays right across a restart.
struct EmbedServer {
    child: tokio::process::Child,
    port: u16,
    url: String,
}

impl EmbedServer {
    /// Starts the server (on a free port when `port` is 0) and waits until
    /// it has written its URL, which it does once its model is loaded.
    async fn start(dir: &Path, port: u16) -> EmbedServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/embed-test-server");
        let url_file = dir.join(format!("embed-url-{port}"));
        let _ = std::fs::remove_file(&url_file);
        let log = dir.join("embed-server.log");
        let child = tokio::process::Command::new(script)
            .arg("start")
            .arg(&url_file)
            .arg(port.to_string())
            .env("MINDORY_MODELS_DIR", support::models_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("start scripts/embed-test-server");
        // The first run installs the server and converts the model.
        let url = eventually("the embedding server writes its URL", Duration::from_secs(300), || {
            let url_file = url_file.clone();
            async move { std::fs::read_to_string(&url_file).ok().map(|s| s.trim().to_string()) }
        })
        .await;
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches("/v1").parse().ok())
            .expect("port in the URL");
        EmbedServer { child, port, url }
    }

    async fn kill(mut self) {
        self.child.kill().await.expect("kill the embedding server");
    }
}

/// `[embed]` pointing at `url` with the model name the server is asked for.
fn remote_config(url: &str) -> EmbedConfig {
    EmbedConfig {
        backend: EmbedBackend::Openai,
        base_url: url.to_string(),
        model: "all-MiniLM-L6-v2".into(),
        // Short, so the test does not wait long for a server it has killed.
        max_retries: 1,
        retry_backoff_ms: 50,
        ..EmbedConfig::default()
    }
}

/// Adds `files` (copied into the daemon's root) and waits until ingestion is idle.
async fn add_and_wait(daemon: &TestDaemon, files: &[PathBuf]) -> Vec<u64> {
    let files = support::copy_into(&daemon.root.join("books"), files);
    let added = daemon.add(&files).await;
    daemon.wait_idle(Duration::from_secs(300)).await;
    added.iter().map(|a| a.book_id).collect()
}

/// Cosine of two vectors.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_embedding_matches_local_and_waits_out_a_server_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let server = EmbedServer::start(tmp.path(), 0).await;
    let config = remote_config(&server.url);

    let remote_root = tmp.path().join("remote");
    let remote = TestDaemon::start_with(&remote_root, |c| c.embed = config.clone()).await;
    let local = TestDaemon::start(&tmp.path().join("local")).await;
    let books = [fixture("constitution.txt"), fixture("looking-glass.md")];
    add_and_wait(&remote, &books).await;
    add_and_wait(&local, &books).await;
    for b in remote.books().await {
        assert_eq!(
            b.status,
            pb::BookStatus::Ready as i32,
            "{} did not become ready: {}",
            b.path,
            b.error
        );
    }
    let model = remote.status().await.embedding_model;
    assert!(model.starts_with("openai:all-MiniLM-L6-v2@127.0.0.1:"), "{model}");

    // The same top hits by meaning, with the same scores.
    for query in [
        "How old must a senator be?",
        "the power to declare war",
        "a looking-glass house on the other side",
        "freedom of speech and of the press",
    ] {
        let by_remote = remote.search_with(query, 3, &[], pb::SearchMode::Vector).await;
        let by_local = local.search_with(query, 3, &[], pb::SearchMode::Vector).await;
        let (r, l) = (&by_remote[0], &by_local[0]);
        assert_eq!((&r.title, &r.text), (&l.title, &l.text), "top hit for {query:?}");
        assert!((r.score - l.score).abs() < 0.01, "{query:?}: {} vs {}", r.score, l.score);
    }

    // Passage vectors from the server are the local ones (cosine >= 0.99).
    let text = std::fs::read_to_string(fixture("constitution.txt")).unwrap();
    let passages: Vec<String> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| p.len() > 80)
        .take(24)
        .map(|p| p.chars().take(600).collect())
        .collect();
    let (config_b, models) = (config.clone(), support::models_dir());
    let worst = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
        let mut here = FastEmbedder::load(&models, 1).unwrap();
        let mut there = RemoteEmbedder::connect(&config_b).unwrap();
        let (a, b) = (here.embed(&refs).unwrap(), there.embed(&refs).unwrap());
        assert_eq!(a.len(), refs.len());
        a.iter().zip(&b).map(|(x, y)| cosine(x, y)).fold(1.0f32, f32::min)
    })
    .await
    .unwrap();
    assert!(
        worst >= 0.99,
        "a passage vector from the server is at cosine {worst} of the local one"
    );

    // The server goes away: a new book waits for its vectors (shown queued,
    // with the reason) instead of failing.
    let port = server.port;
    server.kill().await;
    let files = support::copy_into(&remote_root.join("books"), &[fixture("federalist-10.html")]);
    let id = remote.add(&files).await[0].book_id;
    let waiting = eventually("the book waits for the embedding server", Duration::from_secs(60), || async {
        let book = remote.books().await.into_iter().find(|b| b.id == id)?;
        assert_ne!(
            book.status,
            pb::BookStatus::Failed as i32,
            "failed instead of waiting: {}",
            book.error
        );
        let waits = book.status == pb::BookStatus::Queued as i32 || book.status == pb::BookStatus::Embedding as i32;
        (waits && book.error.contains("did not answer")).then_some(book)
    })
    .await;
    assert!(
        waiting.error.contains(&format!("127.0.0.1:{port}/v1/embeddings")),
        "{}",
        waiting.error
    );

    // Back on the same port: the book finishes by itself.
    let _server = EmbedServer::start(tmp.path(), port).await;
    remote.wait_idle(Duration::from_secs(120)).await;
    let book = remote.books().await.into_iter().find(|b| b.id == id).unwrap();
    assert_eq!(book.status, pb::BookStatus::Ready as i32, "{}", book.error);
    let hits = remote
        .search_with("the violence of faction", 1, &[id], pb::SearchMode::Vector)
        .await;
    assert!(!hits.is_empty() && !hits[0].still_embedding, "searchable by meaning: {hits:?}");

    // `models use` moves the library off the server and back (issue 15):
    // to the local MiniLM by name, then to the server's model by `remote`.
    let (remote_id, local_id) = (model.clone(), mindory_proto::models::EMBEDDING_MODEL_ID.to_string());
    assert_eq!(use_model(&remote, "all-MiniLM-L6-v2").await.unwrap(), pb::UseModelOutcome::Started);
    wait_for_model(&remote, &local_id).await;
    let listed = list_models(&remote).await;
    let server = listed.iter().find(|m| m.name == "remote").expect("the server's model is listed");
    assert_eq!(
        (server.id.as_str(), server.active, server.installed),
        (remote_id.as_str(), false, true)
    );
    assert!(listed.iter().any(|m| m.id == local_id && m.active), "{listed:?}");
    assert_eq!(use_model(&remote, "remote").await.unwrap(), pb::UseModelOutcome::Started);
    wait_for_model(&remote, &remote_id).await;
    let listed = list_models(&remote).await;
    let server = listed.iter().find(|m| m.name == "remote").unwrap();
    assert!(server.active && server.dimensions == 384, "{server:?}");
    assert_eq!(use_model(&remote, &remote_id).await.unwrap(), pb::UseModelOutcome::AlreadyActive);
    let hits = remote
        .search_with("How old must a senator be?", 1, &[], pb::SearchMode::Vector)
        .await;
    assert!(hits[0].text.contains("thirty Years"), "{hits:?}");
    for b in remote.books().await {
        assert_eq!(b.status, pb::BookStatus::Ready as i32, "{}: {}", b.path, b.error);
    }
    // Another server's id, or `remote` on a daemon with no server
    // configured, is refused with what to set, and nothing changes.
    let other = use_model(&remote, "openai:other-model@127.0.0.1:9").await.unwrap_err();
    assert_eq!(other.code(), tonic::Code::FailedPrecondition, "{other:?}");
    assert!(
        other.message().contains(&remote_id) && other.message().contains("[embed]"),
        "{}",
        other.message()
    );
    let unset = use_model(&local, "remote").await.unwrap_err();
    assert_eq!(unset.code(), tonic::Code::FailedPrecondition, "{unset:?}");
    assert!(unset.message().contains("backend = \"openai\""), "{}", unset.message());
    assert!(list_models(&local).await.iter().all(|m| m.name != "remote"));
    assert_eq!(remote.status().await.embedding_model, remote_id);

    remote.stop().await;
    local.stop().await;
}

async fn use_model(daemon: &TestDaemon, name: &str) -> Result<pb::UseModelOutcome, tonic::Status> {
    let response = DaemonClient::new(daemon.channel().await)
        .use_model(pb::UseModelRequest { name: name.into() })
        .await?
        .into_inner();
    Ok(pb::UseModelOutcome::try_from(response.outcome).unwrap())
}

async fn list_models(daemon: &TestDaemon) -> Vec<pb::EmbeddingModel> {
    DaemonClient::new(daemon.channel().await)
        .list_models(pb::ListModelsRequest {})
        .await
        .expect("list models")
        .into_inner()
        .models
}

/// Waits until the library's active model is `id` (the swap finished).
async fn wait_for_model(daemon: &TestDaemon, id: &str) {
    eventually(&format!("the library switches to {id}"), Duration::from_secs(180), || async {
        let status = daemon.status().await;
        (status.embedding_model == id && status.swap.is_none()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_garbage_fails_the_book_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    // One vector, whatever the number of passages.
    let fake = FakeLlm::start(vec![Behaviour::Status(200, r#"{"data":[{"embedding":[1.0,0.0]}]}"#.into())]).await;
    let config = EmbedConfig {
        // Known, so the daemon starts without asking the server.
        dimensions: 384,
        ..remote_config(&fake.url())
    };
    let daemon = TestDaemon::start_with(tmp.path(), |c| c.embed = config).await;
    let ids = add_and_wait(&daemon, &[fixture("looking-glass.md")]).await;
    let book = daemon.books().await.into_iter().find(|b| b.id == ids[0]).unwrap();
    assert_eq!(book.status, pb::BookStatus::Failed as i32, "{book:?}");
    assert!(
        book.error.contains(&format!("{}/embeddings", fake.url())) && book.error.contains("vector(s) for"),
        "names the endpoint and the reason: {}",
        book.error
    );
    daemon.stop().await;
}
