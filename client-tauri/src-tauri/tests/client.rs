//! The command layer against a real daemon, without a display: the app's
//! [`Client`] talks to a `mindoryd` started on a temp socket (the binary the
//! root workspace builds; `scripts/test-app` builds it first), and the
//! events it forwards are collected by a channel sink instead of a webview.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mindory_desktop::client::{names, Client, EventSink, PassageAt, SearchArgs};
use serde_json::Value;
use tokio::sync::mpsc;

/// The daemon binary: `MINDORYD`, else the root workspace's debug build.
fn daemon_bin() -> PathBuf {
    let path = std::env::var_os("MINDORYD")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/mindoryd"));
    assert!(
        path.is_file(),
        "no daemon binary at {}; run `cargo build -p mindory-daemon` at the repository root or set MINDORYD",
        path.display()
    );
    path
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A `mindoryd` process on a temp socket and data dir; killed on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    data: PathBuf,
}

impl Daemon {
    fn start(socket: &Path, data: &Path) -> Daemon {
        Daemon::start_with(socket, data, &[])
    }

    fn start_with(socket: &Path, data: &Path, extra: &[&str]) -> Daemon {
        let child = Command::new(daemon_bin())
            .args(extra)
            .arg("--socket")
            .arg(socket)
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mindoryd");
        Daemon {
            child,
            socket: socket.to_path_buf(),
            data: data.to_path_buf(),
        }
    }

    fn restart(mut self) -> Daemon {
        self.child.kill().expect("kill mindoryd");
        self.child.wait().expect("reap mindoryd");
        Daemon::start(&self.socket.clone(), &self.data.clone())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Collects what the app would send to its webview.
struct ChannelSink(mpsc::UnboundedSender<(String, Value)>);

impl EventSink for ChannelSink {
    fn emit(&self, name: &str, payload: Value) {
        let _ = self.0.send((name.to_string(), payload));
    }
}

/// Waits for the first event matching `want`, failing after `limit`.
async fn expect_event(
    rx: &mut mpsc::UnboundedReceiver<(String, Value)>,
    limit: Duration,
    what: &str,
    want: impl Fn(&str, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((name, payload))) if want(&name, &payload) => return payload,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the event sink closed while waiting for {what}"),
            Err(_) => panic!("no {what} within {limit:?}"),
        }
    }
}

fn is_connection(state: &'static str) -> impl Fn(&str, &Value) -> bool {
    move |name, p| name == names::CONNECTION && p["state"] == state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_events_against_a_real_daemon() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let socket = tmp.path().join("run").join("mindoryd.sock");
    let data = tmp.path().join("data");
    let client = Client::new(socket.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink: Arc<dyn EventSink> = Arc::new(ChannelSink(tx));

    // The follower starts before the daemon: it reports "disconnected" with
    // a sentence that says how to start one, then connects when it appears.
    tokio::spawn(Arc::clone(&client).follow_events(Arc::clone(&sink), Duration::from_millis(100)));
    let down = expect_event(
        &mut rx,
        Duration::from_secs(5),
        "a disconnected report",
        is_connection("disconnected"),
    )
    .await;
    assert!(down["reason"].as_str().unwrap().contains("mindoryd"), "{down}");
    let daemon = Daemon::start(&socket, &data);
    let up = expect_event(&mut rx, Duration::from_secs(120), "a connected report", is_connection("connected")).await;
    assert_eq!(up["protocol_version"], mindory_proto::PROTOCOL_VERSION);

    // Add a book: the Subscribe stream, forwarded, shows it through to ready.
    let added = client.add_paths(vec![fixture("constitution.txt")]).await.expect("add");
    assert_eq!(added[0]["outcome"], "queued", "{added}");
    let id = added[0]["book_id"].as_u64().unwrap();
    expect_event(&mut rx, Duration::from_secs(300), "the book's ready event", |name, p| {
        name == names::DAEMON_EVENT && p["type"] == "ready" && p["book_id"] == id
    })
    .await;
    let books = client.list_books().await.expect("list");
    assert_eq!(books[0]["status"], "ready", "{books}");
    assert!(books[0]["chunks"].as_u64().unwrap() > 10);
    let book = client.get_book(id).await.expect("book");
    assert!(
        !book["sections"].as_array().unwrap().is_empty(),
        "the Constitution has articles: {book}"
    );

    // Search: the hit carries the place label the view shows.
    let found = client
        .search(SearchArgs {
            query: "How old must a senator be?".into(),
            k: 3,
            ..Default::default()
        })
        .await
        .expect("search");
    let hit = &found["hits"][0];
    assert!(
        hit["location"]["place"]
            .as_str()
            .unwrap()
            .starts_with(book["title"].as_str().unwrap()),
        "{hit}"
    );
    assert!(hit["text"].as_str().unwrap().contains("thirty Years"), "{hit}");
    assert!(!hit["retrievers"].as_array().unwrap().is_empty(), "per-retriever scores: {hit}");

    // Reader: the passage at the hit's offset, and a chapter.
    let start = hit["location"]["start"].as_u64().unwrap();
    let at = client
        .get_passage(
            id,
            PassageAt {
                offset: Some(start),
                ..Default::default()
            },
        )
        .await
        .expect("passage");
    assert_eq!(at["start"].as_u64(), Some(start));
    let chapter = client
        .get_passage(
            id,
            PassageAt {
                chapter: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("chapter");
    assert!(!chapter["text"].as_str().unwrap().is_empty());
    let bad = client.get_passage(id, PassageAt::default()).await.expect_err("no location");
    assert!(bad.to_string().contains("exactly one"), "{bad}");

    // Folders and status answer; the status counts the book.
    assert_eq!(client.list_folders().await.expect("folders"), Value::Array(vec![]));
    assert_eq!(client.status().await.expect("status")["books"], 1);

    // The daemon restarts: the follower reports it, reconnects, re-subscribes,
    // and calls work again on a fresh channel.
    let daemon = daemon.restart();
    expect_event(
        &mut rx,
        Duration::from_secs(10),
        "a disconnected report after the kill",
        is_connection("disconnected"),
    )
    .await;
    expect_event(&mut rx, Duration::from_secs(120), "a reconnection", is_connection("connected")).await;
    assert_eq!(client.list_books().await.expect("list after restart")[0]["id"], id);

    // Events flow again after the restart: removing the book is seen.
    let removed = client.remove_book(id).await.expect("remove");
    assert!(removed["chunks_removed"].as_u64().unwrap() > 0);
    expect_event(&mut rx, Duration::from_secs(10), "the removed event", |name, p| {
        name == names::DAEMON_EVENT && p["type"] == "removed" && p["book_id"] == id
    })
    .await;
    drop(daemon);
}

/// Polls `hello` until the daemon answers, failing after `limit`.
async fn wait_for_daemon(client: &Client, limit: Duration) {
    let deadline = Instant::now() + limit;
    while client.hello().await.is_err() {
        assert!(Instant::now() < deadline, "the daemon did not start within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Adds `paths` and polls each book until it is ready; returns their ids.
async fn add_and_wait_ready(client: &Client, paths: Vec<String>, limit: Duration) -> Vec<u64> {
    let added = client.add_paths(paths).await.expect("add");
    let ids: Vec<u64> = added
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["outcome"], "queued", "{a}");
            a["book_id"].as_u64().unwrap()
        })
        .collect();
    let deadline = Instant::now() + limit;
    for &id in &ids {
        while client.get_book(id).await.expect("book")["status"] != "ready" {
            assert!(Instant::now() < deadline, "book {id} was not ready within {limit:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    ids
}

/// The Library's list is walked a page at a time (issue 15): five small
/// books (two fixtures and three copies under other names) asked for in
/// pages of 2 come back every one exactly once, in id order. An app that
/// stopped after the first page would list 2; one that started over from
/// the first page would never end, which the time limit makes a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_books_walks_every_page() {
    // The knob both clients read through `mindory_proto::books_page_size`,
    // at each listing. Setting it here reaches the other tests of this
    // binary too, which is harmless: they list one book, and every listing
    // walks its pages. std serialises its own reads and writes of the
    // environment (including `Command::spawn`'s), and nothing here reads it
    // through libc.
    std::env::set_var(mindory_proto::BOOKS_PAGE_SIZE_ENV, "2");
    assert_eq!(mindory_proto::books_page_size(), 2);

    let tmp = tempfile::tempdir().expect("temp dir");
    let books = tmp.path().join("books");
    std::fs::create_dir_all(&books).expect("books dir");
    let copy = |from: &str, to: &str| {
        let to = books.join(to);
        std::fs::copy(fixture(from), &to).expect("copy fixture");
        to.to_string_lossy().into_owned()
    };
    let socket = tmp.path().join("run").join("mindoryd.sock");
    let _daemon = Daemon::start(&socket, &tmp.path().join("data"));
    let client = Client::new(socket);
    wait_for_daemon(&client, Duration::from_secs(120)).await;
    let limit = Duration::from_secs(120);
    let mut ids = add_and_wait_ready(
        &client,
        vec![
            copy("looking-glass.md", "looking-glass.md"),
            copy("federalist-10.html", "federalist-10.html"),
        ],
        limit,
    )
    .await;
    // The copies come after their originals are ready, so the ingest finds
    // their content by hash instead of embedding it again.
    ids.extend(
        add_and_wait_ready(
            &client,
            vec![
                copy("looking-glass.md", "mirror.md"),
                copy("federalist-10.html", "madison.html"),
                copy("looking-glass.md", "alice.md"),
            ],
            limit,
        )
        .await,
    );
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5, "five distinct books: {ids:?}");

    let listed = tokio::time::timeout(Duration::from_secs(30), client.list_books())
        .await
        .expect("listing in pages of 2 did not finish within 30 s")
        .expect("list");
    let listed: Vec<u64> = listed.as_array().unwrap().iter().map(|b| b["id"].as_u64().unwrap()).collect();
    assert_eq!(listed, ids, "every book once, in id order, in pages of 2");
}

/// A daemon from the future: answers Hello with another protocol version.
struct FutureDaemon;

#[tonic::async_trait]
impl mindory_proto::pb::daemon_server::Daemon for FutureDaemon {
    async fn hello(
        &self,
        _: tonic::Request<mindory_proto::pb::HelloRequest>,
    ) -> Result<tonic::Response<mindory_proto::pb::HelloResponse>, tonic::Status> {
        Ok(tonic::Response::new(mindory_proto::pb::HelloResponse {
            protocol_version: mindory_proto::PROTOCOL_VERSION + 1,
            daemon_version: "99.0.0".into(),
            embedding_model: String::new(),
        }))
    }
    async fn status(
        &self,
        _: tonic::Request<mindory_proto::pb::StatusRequest>,
    ) -> Result<tonic::Response<mindory_proto::pb::StatusResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }
    async fn shutdown(
        &self,
        _: tonic::Request<mindory_proto::pb::ShutdownRequest>,
    ) -> Result<tonic::Response<mindory_proto::pb::ShutdownResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }
    async fn list_models(
        &self,
        _: tonic::Request<mindory_proto::pb::ListModelsRequest>,
    ) -> Result<tonic::Response<mindory_proto::pb::ListModelsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }
    async fn use_model(
        &self,
        _: tonic::Request<mindory_proto::pb::UseModelRequest>,
    ) -> Result<tonic::Response<mindory_proto::pb::UseModelResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_mismatch_is_reported_not_followed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let socket = tmp.path().join("future.sock");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(mindory_proto::pb::daemon_server::DaemonServer::new(FutureDaemon))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    let client = Client::new(socket);
    let err = client.hello().await.expect_err("mismatch");
    assert!(err.to_string().contains("install matching versions"), "{err}");

    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(Arc::clone(&client).follow_events(Arc::new(ChannelSink(tx)), Duration::from_millis(100)));
    let report = expect_event(&mut rx, Duration::from_secs(10), "a mismatch report", is_connection("mismatch")).await;
    assert_eq!(report["daemon_protocol"], mindory_proto::PROTOCOL_VERSION + 1);
}

/// An OpenAI-compatible endpoint that streams one token every 50 ms for a
/// minute, and reports when the client closes the connection mid-stream.
async fn slow_endpoint() -> (String, tokio::sync::oneshot::Receiver<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    let closed_tx = Arc::new(std::sync::Mutex::new(Some(closed_tx)));
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let closed_tx = Arc::clone(&closed_tx);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                // Headers, then the body by Content-Length.
                loop {
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let head = String::from_utf8_lossy(&request).to_string();
                if !head.contains("chat/completions") {
                    let body = r#"{"object":"list","data":[{"id":"fake","object":"model"}]}"#;
                    let _ = conn
                        .write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                        .await;
                    return;
                }
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
                    .await;
                for i in 0..1200 {
                    let chunk = format!("data: {{\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"word{i} \"}},\"finish_reason\":null}}]}}\n\n");
                    if conn.write_all(chunk.as_bytes()).await.is_err() || conn.flush().await.is_err() {
                        if let Some(tx) = closed_tx.lock().expect("closed switch").take() {
                            let _ = tx.send(());
                        }
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
    });
    (url, closed_rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_streams_tokens_and_stop_cancels_upstream() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (url, closed) = slow_endpoint().await;
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        // No guess before retrieval: the endpoint streams the same slow
        // answer to every request, and this test is about the answer's.
        format!("[llm]\nbackend = \"openai\"\nbase_url = \"{url}\"\nmodel = \"fake\"\ncontext_tokens = 8192\nexpand_questions = false\n"),
    )
    .expect("config");
    let socket = tmp.path().join("run").join("mindoryd.sock");
    let _daemon = Daemon::start_with(&socket, &tmp.path().join("data"), &["--config", config.to_str().unwrap()]);
    let client = Client::new(socket);
    wait_for_daemon(&client, Duration::from_secs(120)).await;
    add_and_wait_ready(&client, vec![fixture("constitution.txt")], Duration::from_secs(120)).await;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink: Arc<dyn EventSink> = Arc::new(ChannelSink(tx));
    let args = serde_json::from_value(serde_json::json!({"kind": "ask", "question": "How old must a senator be?"})).expect("args");
    let request = client.start_assistant(args, sink).await.expect("ask");
    let is_ask = move |name: &str, p: &Value| name == names::ASK && p["request"] == request;
    let context = expect_event(&mut rx, Duration::from_secs(60), "the context event", move |n, p| {
        is_ask(n, p) && p["event"]["kind"] == "context"
    })
    .await;
    assert!(context["event"]["passages"][0]["in_prompt"].as_bool().unwrap(), "{context}");
    assert!(context["event"]["passages"][0]["left_out"].is_null(), "{context}");
    // The budget bar's parts add up to the prompt.
    let budget = &context["event"]["budget"];
    let parts: u64 = ["passages", "history", "framing"].iter().map(|k| budget[k].as_u64().unwrap()).sum();
    assert_eq!(parts, context["event"]["prompt_tokens"].as_u64().unwrap(), "{context}");
    assert!(budget["answer_reserve"].as_u64().unwrap() > 0, "{context}");
    // Tokens arrive while the answer is still being written.
    for _ in 0..3 {
        expect_event(&mut rx, Duration::from_secs(30), "a token", move |n, p| {
            is_ask(n, p) && p["event"]["kind"] == "token"
        })
        .await;
    }
    assert!(client.stop(request), "the call was still running");
    let end = expect_event(&mut rx, Duration::from_secs(10), "the end of the call", move |n, p| {
        is_ask(n, p) && p["end"] == true
    })
    .await;
    assert_eq!(end["error"], "cancelled", "{end}");
    // The daemon saw the cancellation and closed the upstream connection.
    tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the endpoint saw no close")
        .expect("closed");
    assert!(!client.stop(request), "a finished call cannot be stopped twice");
}
