//! Tests of the remote embedder against a small in-process embeddings
//! server: answer parsing, batching and order, requests in flight, retries,
//! timeouts, the error kinds that decide whether a book waits or fails, and
//! the `[embed]` settings.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::error_kind::ErrorKind;

/// Vector length the test server answers with.
const DIMS: usize = 4;

/// What the test server answers.
#[derive(Clone)]
enum Answer {
    /// One vector per input: `[len(text), 1, 0, 0]`, so order is checkable.
    Echo,
    /// This status and body.
    Status(u16, String),
    /// Reads the request and never answers.
    Hang,
}

/// A minimal HTTP/1.1 embeddings server on its own runtime: kept-alive
/// connections, `Content-Length` bodies only (what reqwest sends for JSON).
/// The first answers come from `script`, then `Echo`.
struct TestServer {
    url: String,
    /// Inputs per request, in arrival order.
    requests: Arc<Mutex<Vec<usize>>>,
    /// Most requests being answered at the same time.
    max_in_flight: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl TestServer {
    fn start(script: Vec<Answer>, delay: Duration) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let (reqs, max) = (requests.clone(), max_in_flight.clone());
        let in_flight = Arc::new(AtomicUsize::new(0));
        runtime.spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let (reqs, max, in_flight, script) = (reqs.clone(), max.clone(), in_flight.clone(), script.clone());
                // Connections are kept alive, as real servers do, so that
                // the clients' connection pools are exercised.
                tokio::spawn(async move {
                    while let Some(body) = read_request(&mut socket).await {
                        let answer = script.lock().unwrap().pop_front().unwrap_or(Answer::Echo);
                        let inputs: Vec<String> = serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| serde_json::from_value(v["input"].clone()).ok())
                            .unwrap_or_default();
                        reqs.lock().unwrap().push(inputs.len());
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        let (code, body) = match answer {
                            Answer::Echo => (200, echo(&inputs)),
                            Answer::Status(code, body) => (code, body),
                            Answer::Hang => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                return;
                            }
                        };
                        let head = format!(
                            "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 0\r\n\r\n",
                            body.len()
                        );
                        if socket.write_all(head.as_bytes()).await.is_err() || socket.write_all(body.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        TestServer {
            url,
            requests,
            max_in_flight,
            _runtime: runtime,
        }
    }

    fn config(&self) -> EmbedConfig {
        EmbedConfig {
            backend: EmbedBackend::Openai,
            base_url: self.url.clone(),
            model: "mini".into(),
            retry_backoff_ms: 1,
            dimensions: DIMS,
            ..EmbedConfig::default()
        }
    }

    fn requests(&self) -> Vec<usize> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one request's body (after its headers, `Content-Length` long).
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[header_end..header_end + length].to_vec())
}

/// The echo answer, listed in reverse so that `index` has to be honoured.
fn echo(inputs: &[String]) -> String {
    let data: Vec<serde_json::Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| serde_json::json!({"index": i, "object": "embedding", "embedding": [t.len() as f32, 1.0, 0.0, 0.0]}))
        .collect();
    serde_json::json!({"object": "list", "data": data, "model": "mini"}).to_string()
}

/// What `[len, 1, 0, 0]` becomes after normalisation: its first number.
fn first(len: usize) -> f32 {
    let l = len as f32;
    l / (l * l + 1.0).sqrt()
}

#[test]
fn parse_accepts_out_of_order_answers_and_normalises() {
    let body = br#"{"data":[{"index":1,"embedding":[0,3,4]},{"index":0,"embedding":[2,0,0]}]}"#;
    let v = parse_embeddings(body, 2, Some(3)).unwrap();
    assert_eq!(v, vec![vec![1.0, 0.0, 0.0], vec![0.0, 0.6, 0.8]]);
    // Without an index, order is the list's; the length comes from the first.
    let v = parse_embeddings(br#"{"data":[{"embedding":[1,0]},{"embedding":[0,2]}]}"#, 2, None).unwrap();
    assert_eq!(v, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
}

#[test]
fn parse_names_what_is_wrong_with_a_bad_answer() {
    let cases: [(&[u8], &str); 7] = [
        (b"<html>502 Bad Gateway</html>", "not an embeddings JSON object"),
        (br#"{"data":[{"embedding":[1,0,0]}]}"#, "1 vector(s) for 2 passage(s)"),
        (
            br#"{"data":[{"embedding":[1,0]},{"embedding":[1,0,0]}]}"#,
            "a vector of 2 numbers where the model gives 3",
        ),
        (br#"{"data":[{"embedding":[1e60,0,0]},{"embedding":[1,0,0]}]}"#, "not finite"),
        (br#"{"data":[{"embedding":[0,0,0]},{"embedding":[1,0,0]}]}"#, "all zeros"),
        (
            br#"{"data":[{"index":0,"embedding":[1,0,0]},{"index":0,"embedding":[1,0,0]}]}"#,
            "index 0 appears twice",
        ),
        (
            br#"{"data":[{"index":5,"embedding":[1,0,0]},{"index":0,"embedding":[1,0,0]}]}"#,
            "index 5 is out of range",
        ),
    ];
    for (body, expected) in cases {
        let e = parse_embeddings(body, 2, Some(3)).unwrap_err();
        assert!(e.contains(expected), "{e:?} should say {expected:?}");
    }
    // NaN is not JSON at all.
    let e = parse_embeddings(br#"{"data":[{"embedding":[NaN,0,0]},{"embedding":[1,0,0]}]}"#, 2, Some(3)).unwrap_err();
    assert!(e.contains("not an embeddings JSON object"), "{e}");
}

#[test]
fn batches_keep_order_and_run_concurrently() {
    let server = TestServer::start(Vec::new(), Duration::from_millis(150));
    let config = EmbedConfig {
        batch_size: 3,
        concurrency: 2,
        ..server.config()
    };
    let mut engine = RemoteEmbedder::connect_with_key(&config, None).unwrap();
    let texts: Vec<String> = (1..=10).map(|n| "x".repeat(n)).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = engine.embed(&refs).unwrap();
    assert_eq!(vectors.len(), 10);
    for (n, v) in (1..=10).zip(&vectors) {
        assert!((v[0] - first(n)).abs() < 1e-6, "vector {n} is out of order: {v:?}");
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let mut sizes = server.requests();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1, 3, 3, 3], "requests of `batch_size`");
    assert_eq!(server.max_in_flight.load(Ordering::SeqCst), 2, "`concurrency` requests in flight");
    assert_eq!(engine.model_id(), "openai:mini@127.0.0.1");
    assert_eq!(engine.dimensions(), DIMS);
}

#[test]
fn dimensions_are_learnt_from_the_first_answer() {
    let server = TestServer::start(Vec::new(), Duration::ZERO);
    let config = EmbedConfig {
        dimensions: 0,
        // A hang fails the test quickly.
        timeout_s: 2,
        max_retries: 0,
        ..server.config()
    };
    let engine = RemoteEmbedder::connect_with_key(&config, None).unwrap();
    assert_eq!(engine.dimensions(), DIMS);
    assert_eq!(server.requests(), vec![1], "one probe");
    // The query engine shares it without asking again, and works on a
    // connection pool of its own: one borrowed from the ingest engine would
    // hang, since that engine's runtime runs only while it embeds.
    let mut query = engine.with_concurrency(1).unwrap();
    assert_eq!(query.dimensions(), DIMS);
    let mut engine = engine;
    engine.embed(&["warm the pool"]).unwrap();
    let started = std::time::Instant::now();
    query.embed(&["a query"]).unwrap();
    engine.embed(&["and back"]).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no engine waits on the other's connections"
    );
}

#[test]
fn server_errors_and_429_are_retried() {
    let script = vec![
        Answer::Status(503, r#"{"error":{"message":"loading model"}}"#.into()),
        Answer::Status(429, r#"{"error":{"message":"slow down"}}"#.into()),
    ];
    let server = TestServer::start(script, Duration::ZERO);
    let mut engine = RemoteEmbedder::connect_with_key(&server.config(), None).unwrap();
    let v = engine.embed(&["abc"]).unwrap();
    assert!((v[0][0] - first(3)).abs() < 1e-6);
    assert_eq!(server.requests().len(), 3, "two failures, then the answer");
}

#[test]
fn a_server_that_stays_down_is_unavailable_so_books_wait() {
    let config = EmbedConfig {
        base_url: format!("http://127.0.0.1:{}/v1", crate::llm::fake::refused_port()),
        max_retries: 2,
        ..TestServer::start(Vec::new(), Duration::ZERO).config()
    };
    let mut engine = RemoteEmbedder::connect_with_key(&config, None).unwrap();
    let e = EmbedError::from(engine.run(|this| this.request(&["a"], Some(DIMS))).unwrap_err());
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.defers_ingest());
    let text = e.to_string();
    assert!(text.contains("/v1/embeddings") && text.contains("after 3 attempt(s)"), "{text}");
    // Without `dimensions` the daemon cannot start without the server, and says why.
    let e = RemoteEmbedder::connect_with_key(&EmbedConfig { dimensions: 0, ..config }, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

#[test]
fn a_hanging_server_times_out() {
    let server = TestServer::start(vec![Answer::Hang, Answer::Hang], Duration::ZERO);
    let config = EmbedConfig {
        timeout_s: 1,
        max_retries: 1,
        ..server.config()
    };
    let mut engine = RemoteEmbedder::connect_with_key(&config, None).unwrap();
    let started = std::time::Instant::now();
    let e = EmbedError::from(engine.run(|this| this.request(&["a"], Some(DIMS))).unwrap_err());
    assert!(e.defers_ingest(), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded by the timeout");
}

#[test]
fn garbage_and_refusals_fail_the_book_with_the_endpoint_and_reason() {
    let key = "sk-test-0123456789";
    let script = vec![
        Answer::Status(200, r#"{"data":[{"embedding":[1,2]}]}"#.into()),
        Answer::Status(401, format!(r#"{{"error":{{"message":"bad key {key}"}}}}"#)),
    ];
    let server = TestServer::start(script, Duration::ZERO);
    let mut engine = RemoteEmbedder::connect_with_key(&server.config(), Some(key.into())).unwrap();
    let e = engine.embed(&["a"]).unwrap_err();
    assert!(!e.defers_ingest());
    assert_eq!(e.kind(), ErrorKind::Precondition);
    let text = e.to_string();
    assert!(
        text.contains(&server.url) && text.contains("a vector of 2 numbers where the model gives 4"),
        "{text}"
    );
    let e = engine.embed(&["a"]).unwrap_err();
    let text = e.to_string();
    assert!(
        !e.defers_ingest() && text.contains("HTTP 401") && text.contains("MINDORY_EMBED_API_KEY"),
        "{text}"
    );
    assert!(!text.contains(key) && text.contains("[redacted]"), "the key never shows: {text}");
    assert!(!format!("{engine:?}").contains(key));
    assert_eq!(server.requests().len(), 2, "neither is retried");
}

#[test]
fn settings_come_from_the_file_then_the_environment() {
    let text = "[llm]\nbackend = \"none\"\n[embed]\nbackend = \"openai\"\nbase_url = \"http://gpu-box:8080/v1/\"\nmodel = \"bge\"\nconcurrency = 4\n";
    let mut c = parse(Path::new("c.toml"), text).unwrap();
    assert_eq!((c.backend, c.concurrency, c.batch_size), (EmbedBackend::Openai, 4, 32));
    assert_eq!(c.model_id().unwrap(), "openai:bge@gpu-box", "no port, no trailing slash");
    c.apply_env(|n| match n {
        "MINDORY_EMBED_CONCURRENCY" => Some("1".into()),
        "MINDORY_EMBED_MODEL" => Some("e5".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!((c.concurrency, c.model.as_str()), (1, "e5"));
    let e = c.apply_env(|n| (n == "MINDORY_EMBED_BACKEND").then(|| "gpu".into())).unwrap_err();
    assert!(e.to_string().contains("use local or openai"), "{e}");
    let e = parse(Path::new("/x/c.toml"), "[embed]\nbase_ulr = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("base_ulr"), "{e}");
    assert_eq!(parse(Path::new("c.toml"), "").unwrap(), EmbedConfig::default());
}

#[test]
fn bad_settings_say_what_to_fix() {
    let base = EmbedConfig {
        backend: EmbedBackend::Openai,
        base_url: "http://h:1/v1".into(),
        model: "m".into(),
        ..EmbedConfig::default()
    };
    for (config, expected) in [
        (
            EmbedConfig {
                base_url: String::new(),
                ..base.clone()
            },
            "`base_url` is empty",
        ),
        (
            EmbedConfig {
                base_url: "ftp://h/v1".into(),
                ..base.clone()
            },
            "http:// or https://",
        ),
        (
            EmbedConfig {
                base_url: "http://u:p@h/v1".into(),
                ..base.clone()
            },
            "must not contain credentials",
        ),
        (
            EmbedConfig {
                model: " ".into(),
                ..base.clone()
            },
            "`model` is empty",
        ),
        (
            EmbedConfig {
                concurrency: 0,
                ..base.clone()
            },
            "greater than zero",
        ),
    ] {
        let e = config.model_id().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Precondition);
        assert!(e.to_string().contains(expected) && e.to_string().contains("[embed]"), "{e}");
    }
    // A library of a remote model needs the settings that reach it.
    let Err(e) = load_pair("openai:m@h", None) else {
        panic!("loaded without settings")
    };
    assert!(e.to_string().contains("openai:m@h"), "{e}");
    let Err(e) = load_pair("openai:other@h", Some(&base)) else {
        panic!("loaded another model")
    };
    assert!(e.to_string().contains("openai:m@h"), "names what is configured: {e}");
}
