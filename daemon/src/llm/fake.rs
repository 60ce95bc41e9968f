//! A scriptable, fault-injecting fake of an OpenAI-compatible server for
//! tests.
//!
//! This module owns a deliberately small hand-rolled HTTP/1.1 server built on
//! tokio alone. Each incoming connection carries exactly one request and is
//! answered with the next [`Behaviour`] of the script (the last one repeats),
//! which makes failure sequences such as "500, then success" trivial to set
//! up. Every request is recorded together with whether the client closed the
//! connection before the behaviour had finished, which is how tests prove that
//! cancellation really tears down the HTTP request instead of leaving it
//! running in the background.
//!
//! It is not a general HTTP server: it ignores keep-alive, answers every
//! request with `Connection: close`, and understands only `Content-Length`
//! request bodies, which is what reqwest sends for JSON.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// What the fake server does with one request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// A well-formed chunked SSE answer: a role chunk, one content chunk per
    /// piece (with `delay_ms` before each), a `finish_reason: "stop"` chunk,
    /// a usage chunk and `data: [DONE]`.
    Stream { pieces: Vec<String>, delay_ms: u64 },
    /// A plain response with this status and body. A 429 carries
    /// `Retry-After: 0` so retry tests stay fast.
    Status(u16, String),
    /// Reads the request and never answers.
    Hang,
    /// Sends 200 headers for an event stream, then nothing.
    StallAfterHeaders,
    /// Sends 200 `text/event-stream` headers, then these raw lines (each
    /// followed by `\n`), then closes; the body is delimited by the close.
    Malformed(Vec<String>),
    /// Sends the first `n` pieces as chunks, then drops the socket without
    /// finishing the chunked body.
    DisconnectAfter { pieces: Vec<String>, n: usize },
    /// Sends `piece` every `interval_ms`, `count` times, then finishes
    /// normally; long enough for a test to cancel in the middle.
    SlowStream { piece: String, interval_ms: u64, count: usize },
    /// A `GET /models` style JSON answer listing these model ids.
    Models(Vec<String>),
}

impl Behaviour {
    /// A well-formed answer streaming `pieces` without delay.
    pub fn stream(pieces: &[&str]) -> Behaviour {
        Behaviour::Stream {
            pieces: pieces.iter().map(|p| p.to_string()).collect(),
            delay_ms: 0,
        }
    }
}

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names are lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, or `None` if it was empty or not JSON.
    pub body: Option<serde_json::Value>,
    /// True if the client closed the connection before the behaviour had
    /// finished sending (or, for `Hang`, at all).
    pub client_closed_early: bool,
}

impl RecordedRequest {
    /// Returns the value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

struct Shared {
    script: Vec<Behaviour>,
    next: usize,
    requests: Vec<RecordedRequest>,
    /// Bumped by `set_script`: a connection of an earlier script that ends
    /// after the reset must not mark a request of the new one.
    epoch: u64,
}

/// A running fake server; it stops when dropped.
pub struct FakeLlm {
    addr: std::net::SocketAddr,
    shared: Arc<Mutex<Shared>>,
    closed_rx: watch::Receiver<usize>,
    closed_tx: Arc<watch::Sender<usize>>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl FakeLlm {
    /// Binds 127.0.0.1 on a free port and starts serving `script`.
    ///
    /// # Panics
    /// Panics if the script is empty or binding fails, since either is a bug
    /// in the test rather than a condition to handle.
    pub async fn start(script: Vec<Behaviour>) -> FakeLlm {
        assert!(!script.is_empty(), "FakeLlm needs at least one behaviour");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake server");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Mutex::new(Shared {
            script,
            next: 0,
            requests: Vec::new(),
            epoch: 0,
        }));
        let (closed_tx, closed_rx) = watch::channel(0usize);
        let closed_tx = Arc::new(closed_tx);
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();

        let accept = {
            let shared = shared.clone();
            let tasks = tasks.clone();
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((sock, _)) = listener.accept().await else { continue };
                    let h = tokio::spawn(serve(sock, shared.clone(), closed_tx.clone()));
                    tasks.lock().unwrap().push(h.abort_handle());
                }
            })
        };
        tasks.lock().unwrap().push(accept.abort_handle());
        FakeLlm {
            addr,
            shared,
            closed_rx,
            closed_tx,
            tasks,
        }
    }

    /// Replaces the script and forgets earlier requests and early closes,
    /// so one server (and one daemon pointed at it) can play scenario after
    /// scenario.
    pub fn set_script(&self, script: Vec<Behaviour>) {
        assert!(!script.is_empty(), "FakeLlm needs at least one behaviour");
        let mut shared = self.shared.lock().unwrap();
        shared.script = script;
        shared.next = 0;
        shared.requests.clear();
        shared.epoch += 1;
        self.closed_tx.send_replace(0);
    }

    /// Base URL including `/v1`, e.g. `http://127.0.0.1:4321/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// All requests received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Waits until some connection has been closed early by the client;
    /// returns false if that did not happen within `timeout`.
    pub async fn wait_client_closed(&self, timeout: Duration) -> bool {
        let mut rx = self.closed_rx.clone();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        // Aborting the connection tasks too matters for `Hang`, which would
        // otherwise keep a socket open until the runtime shuts down.
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// Returns a loopback port with nothing listening on it, for connection
/// refused tests. The port is found by binding and immediately releasing it;
/// another process could grab it in between, but on loopback in a test run
/// that is vanishingly unlikely.
pub fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

async fn serve(sock: TcpStream, shared: Arc<Mutex<Shared>>, closed_tx: Arc<watch::Sender<usize>>) {
    let _ = sock.set_nodelay(true);
    let (mut rd, mut wr) = sock.into_split();
    let Some(mut req) = read_request(&mut rd).await else { return };

    let behaviour = {
        let mut s = shared.lock().unwrap();
        let b = s.script[s.next.min(s.script.len() - 1)].clone();
        s.next += 1;
        b
    };
    let (index, epoch) = {
        let mut s = shared.lock().unwrap();
        req.client_closed_early = false;
        s.requests.push(req);
        (s.requests.len() - 1, s.epoch)
    };

    // The peer's close shows up as EOF (or a reset) on the read half. Racing
    // that against the behaviour tells us whether the client left early.
    let watch_eof = async {
        let mut buf = [0u8; 256];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {} // Pipelined bytes are not expected; ignore them.
            }
        }
    };
    // Biased towards the behaviour so that, when it finishes in the same
    // poll in which the client's close arrives, the close counts as normal.
    let closed_early = tokio::select! {
        biased;
        r = run_behaviour(&behaviour, &mut wr) => r.is_err(),
        _ = watch_eof => true,
    };
    if closed_early {
        let mut s = shared.lock().unwrap();
        // A script set meanwhile forgot this request; nothing to mark.
        if s.epoch == epoch {
            s.requests[index].client_closed_early = true;
            closed_tx.send_modify(|n| *n += 1);
        }
    } else {
        let _ = wr.shutdown().await;
    }
}

/// Reads one request head and its `Content-Length` body.
async fn read_request(rd: &mut (impl AsyncReadExt + Unpin)) -> Option<RecordedRequest> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = rd.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = rd.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Some(RecordedRequest {
        method,
        path,
        headers,
        body: serde_json::from_slice(&body[..len.min(body.len())]).ok(),
        client_closed_early: false,
    })
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

const SSE_CHUNKED_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

fn content_chunk(piece: &str) -> String {
    let v = serde_json::json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake",
        "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]
    });
    format!("data: {v}\n\n")
}

fn role_chunk() -> String {
    "data: {\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n".to_owned()
}

fn finish_chunks(n_pieces: usize) -> String {
    format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n\
         data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":11,\"completion_tokens\":{n_pieces},\"total_tokens\":{}}}}}\n\n\
         data: [DONE]\n\n",
        11 + n_pieces
    )
}

/// Writes `data` as one HTTP chunk.
async fn write_chunk(wr: &mut OwnedWriteHalf, data: &str) -> std::io::Result<()> {
    wr.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes()).await?;
    wr.flush().await
}

/// Writes the finish, usage and `[DONE]` events together with the
/// terminating zero-length chunk in a single write. A client may hang up as
/// soon as it sees `[DONE]`; if the terminator went out separately, that
/// legitimate close could race with it and be recorded as an early close.
async fn write_final(wr: &mut OwnedWriteHalf, n_pieces: usize) -> std::io::Result<()> {
    let data = finish_chunks(n_pieces);
    wr.write_all(format!("{:x}\r\n{data}\r\n0\r\n\r\n", data.len()).as_bytes()).await?;
    wr.flush().await
}

/// Plays one behaviour. An `Err` means a write failed, i.e. the client went
/// away while we were still sending.
async fn run_behaviour(b: &Behaviour, wr: &mut OwnedWriteHalf) -> std::io::Result<()> {
    match b {
        Behaviour::Stream { pieces, delay_ms } => {
            wr.write_all(SSE_CHUNKED_HEAD.as_bytes()).await?;
            write_chunk(wr, &role_chunk()).await?;
            for p in pieces {
                if *delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(*delay_ms)).await;
                }
                write_chunk(wr, &content_chunk(p)).await?;
            }
            write_final(wr, pieces.len()).await?;
        }
        Behaviour::Status(code, body) => {
            let retry = if *code == 429 { "Retry-After: 0\r\n" } else { "" };
            let head = format!(
                "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry}Connection: close\r\n\r\n",
                reason(*code),
                body.len()
            );
            wr.write_all(head.as_bytes()).await?;
            wr.write_all(body.as_bytes()).await?;
        }
        Behaviour::Hang => std::future::pending::<()>().await,
        Behaviour::StallAfterHeaders => {
            wr.write_all(SSE_CHUNKED_HEAD.as_bytes()).await?;
            wr.flush().await?;
            std::future::pending::<()>().await;
        }
        Behaviour::Malformed(lines) => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
            wr.write_all(head.as_bytes()).await?;
            for l in lines {
                wr.write_all(l.as_bytes()).await?;
                wr.write_all(b"\n").await?;
            }
        }
        Behaviour::DisconnectAfter { pieces, n } => {
            wr.write_all(SSE_CHUNKED_HEAD.as_bytes()).await?;
            write_chunk(wr, &role_chunk()).await?;
            for p in pieces.iter().take(*n) {
                write_chunk(wr, &content_chunk(p)).await?;
            }
            // Returning lets `serve` shut the socket down without the
            // terminating zero-length chunk, which is an abrupt end of body.
        }
        Behaviour::SlowStream { piece, interval_ms, count } => {
            wr.write_all(SSE_CHUNKED_HEAD.as_bytes()).await?;
            write_chunk(wr, &role_chunk()).await?;
            for _ in 0..*count {
                write_chunk(wr, &content_chunk(piece)).await?;
                tokio::time::sleep(Duration::from_millis(*interval_ms)).await;
            }
            write_final(wr, *count).await?;
        }
        Behaviour::Models(ids) => {
            let data: Vec<_> = ids
                .iter()
                .map(|id| serde_json::json!({"id": id, "object": "model", "owned_by": "fake"}))
                .collect();
            let body = serde_json::json!({"object": "list", "data": data}).to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            wr.write_all(head.as_bytes()).await?;
            wr.write_all(body.as_bytes()).await?;
        }
    }
    wr.flush().await
}
