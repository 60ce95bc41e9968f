//! Tests of `OpenAiClient` against the fault-injecting `FakeLlm`.
//!
//! Each test scripts the server's behaviour per request and checks both what
//! the client returns and what the server observed, such as the number of
//! attempts or whether the connection was torn down on cancellation. Delays
//! and timeouts are kept to tens of milliseconds so the whole file runs in a
//! couple of seconds.

use std::time::{Duration, Instant};

use super::{OpenAiClient, OpenAiConfig, OpenAiError, StreamStats};
use crate::llm::fake::{refused_port, Behaviour, FakeLlm};
use crate::llm::{ChatMessage, GenParams, Role};
use tokio::sync::mpsc;

/// A configuration with fast backoff and short timeouts, so failure paths
/// finish quickly.
fn cfg(url: &str) -> OpenAiConfig {
    let mut c = OpenAiConfig::new(url, "test-model");
    c.connect_timeout = Duration::from_millis(500);
    c.first_token_timeout = Duration::from_secs(3);
    c.total_timeout = Duration::from_secs(10);
    c.max_retries = 3;
    c.backoff = Duration::from_millis(5);
    c
}

fn msgs() -> Vec<ChatMessage> {
    vec![
        ChatMessage {
            role: Role::System,
            content: "Be brief.".into(),
        },
        ChatMessage {
            role: Role::User,
            content: "Say hello".into(),
        },
    ]
}

fn params() -> GenParams {
    GenParams {
        max_tokens: 64,
        temperature: 0.7,
        top_p: 0.9,
        seed: 42,
        stop: vec!["\n\n".into()],
    }
}

fn pieces(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| s.to_string()).collect()
}

/// Runs one `stream_chat` and returns its result together with everything
/// that was forwarded to the channel.
async fn run(client: &OpenAiClient) -> (Result<StreamStats, OpenAiError>, String) {
    let (tx, mut rx) = mpsc::channel::<String>(16);
    let collector = tokio::spawn(async move {
        let mut out = String::new();
        while let Some(s) = rx.recv().await {
            out.push_str(&s);
        }
        out
    });
    let res = client.stream_chat(&msgs(), &params(), &tx).await;
    drop(tx);
    (res, collector.await.unwrap())
}

#[tokio::test]
async fn happy_path_streams_all_pieces_and_sends_expected_request() {
    let fake = FakeLlm::start(vec![Behaviour::Stream {
        pieces: pieces(&["Hel", "lo, ", "wörld", " 🌍"]),
        delay_ms: 1,
    }])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (res, text) = run(&client).await;
    let stats = res.unwrap();
    assert_eq!(text, "Hello, wörld 🌍");
    assert_eq!(stats.attempts, 1);
    assert_eq!(stats.finish_reason.as_deref(), Some("stop"));
    // The fake sends usage, so the counts come from it.
    assert_eq!(stats.prompt_tokens, Some(11));
    assert_eq!(stats.completion_tokens, 4);
    assert!(stats.first_token_ms <= stats.total_ms);

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.header("authorization"), None);
    let body = r.body.as_ref().unwrap();
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(body["temperature"], 0.7);
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["seed"], 42);
    assert_eq!(body["stop"], serde_json::json!(["\n\n"]));
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "Say hello");
    assert!(body.get("stream_options").is_none());
    assert!(!r.client_closed_early);
}

#[tokio::test]
async fn empty_stop_list_is_omitted() {
    let fake = FakeLlm::start(vec![Behaviour::Stream {
        pieces: pieces(&["x"]),
        delay_ms: 0,
    }])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (tx, _rx) = mpsc::channel::<String>(16);
    let mut p = params();
    p.stop.clear();
    client.stream_chat(&msgs(), &p, &tx).await.unwrap();
    assert!(fake.requests()[0].body.as_ref().unwrap().get("stop").is_none());
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let url = format!("http://127.0.0.1:{}/v1", refused_port());
    let client = OpenAiClient::new(cfg(&url)).unwrap();
    let t = Instant::now();
    let (res, text) = run(&client).await;
    let err = res.unwrap_err();
    assert!(matches!(err, OpenAiError::Connect { attempts: 4, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("{url}/chat/completions")), "{msg}");
    assert!(msg.contains("after 4 attempt"), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    assert!(msg.contains("base_url"), "{msg}");
    assert!(text.is_empty());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let fake = FakeLlm::start(vec![
        Behaviour::Status(500, r#"{"error":{"message":"boom"}}"#.into()),
        Behaviour::Stream {
            pieces: pieces(&["fine"]),
            delay_ms: 0,
        },
    ])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (res, text) = run(&client).await;
    let stats = res.unwrap();
    assert_eq!(text, "fine");
    assert_eq!(stats.attempts, 2);
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn persistent_server_error_reports_status_with_excerpt() {
    let fake = FakeLlm::start(vec![Behaviour::Status(503, r#"{"error":{"message":"model loading"}}"#.into())]).await;
    let mut c = cfg(&fake.url());
    c.max_retries = 1;
    let client = OpenAiClient::new(c).unwrap();
    let (res, _) = run(&client).await;
    match res.unwrap_err() {
        OpenAiError::Status {
            code: 503,
            attempts: 2,
            excerpt,
            ..
        } => assert_eq!(excerpt, "model loading"),
        e => panic!("{e:?}"),
    }
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn rate_limited_then_success() {
    let fake = FakeLlm::start(vec![
        Behaviour::Status(429, r#"{"error":{"message":"slow down"}}"#.into()),
        Behaviour::Stream {
            pieces: pieces(&["a", "b"]),
            delay_ms: 0,
        },
    ])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (res, text) = run(&client).await;
    assert_eq!(res.unwrap().attempts, 2);
    assert_eq!(text, "ab");
}

#[tokio::test]
async fn rate_limited_forever() {
    let fake = FakeLlm::start(vec![Behaviour::Status(429, r#"{"error":{"message":"slow down"}}"#.into())]).await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (res, _) = run(&client).await;
    let err = res.unwrap_err();
    match &err {
        OpenAiError::RateLimited { attempts: 4, excerpt, .. } => assert_eq!(excerpt, "slow down"),
        e => panic!("{e:?}"),
    }
    assert!(err.to_string().contains("429"), "{err}");
    assert_eq!(fake.requests().len(), 4);
}

#[tokio::test]
async fn client_error_is_not_retried() {
    let fake = FakeLlm::start(vec![Behaviour::Status(
        400,
        r#"{"error":{"message":"context length exceeded","type":"invalid_request_error"}}"#.into(),
    )])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (res, _) = run(&client).await;
    let err = res.unwrap_err();
    match &err {
        OpenAiError::Status {
            code: 400,
            attempts: 1,
            excerpt,
            ..
        } => assert_eq!(excerpt, "context length exceeded"),
        e => panic!("{e:?}"),
    }
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn hang_before_headers_is_first_token_timeout() {
    let fake = FakeLlm::start(vec![Behaviour::Hang]).await;
    let mut c = cfg(&fake.url());
    c.first_token_timeout = Duration::from_millis(200);
    let client = OpenAiClient::new(c).unwrap();
    let t = Instant::now();
    let (res, _) = run(&client).await;
    assert!(matches!(res, Err(OpenAiError::FirstTokenTimeout { .. })), "{res:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    // A timeout is not one of the retried conditions.
    assert_eq!(fake.requests().len(), 1);
    assert!(fake.wait_client_closed(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn stall_after_headers_is_first_token_timeout() {
    let fake = FakeLlm::start(vec![Behaviour::StallAfterHeaders]).await;
    let mut c = cfg(&fake.url());
    c.first_token_timeout = Duration::from_millis(200);
    let client = OpenAiClient::new(c).unwrap();
    let (res, _) = run(&client).await;
    let err = res.unwrap_err();
    assert!(matches!(err, OpenAiError::FirstTokenTimeout { .. }), "{err:?}");
    assert!(err.to_string().contains("first_token_timeout"), "{err}");
}

#[tokio::test]
async fn total_timeout_mid_stream() {
    let fake = FakeLlm::start(vec![Behaviour::SlowStream {
        piece: "x".into(),
        interval_ms: 50,
        count: 1000,
    }])
    .await;
    let mut c = cfg(&fake.url());
    c.total_timeout = Duration::from_millis(300);
    let client = OpenAiClient::new(c).unwrap();
    let (res, text) = run(&client).await;
    match res.unwrap_err() {
        OpenAiError::TotalTimeout { after_tokens, .. } => {
            assert!(after_tokens > 0);
            assert_eq!(after_tokens as usize, text.len());
        }
        e => panic!("{e:?}"),
    }
    assert!(fake.wait_client_closed(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn malformed_json_payload_is_reported() {
    let fake = FakeLlm::start(vec![Behaviour::Malformed(vec![
        r#"data: {"choices":[{"delta":{"content":"ok"}}]}"#.into(),
        "".into(),
        "data: {this is not json".into(),
        "".into(),
    ])])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (res, text) = run(&client).await;
    let err = res.unwrap_err();
    match &err {
        OpenAiError::Malformed { detail, .. } => assert!(detail.contains("{this is not json"), "{detail}"),
        e => panic!("{e:?}"),
    }
    assert_eq!(text, "ok");
    // Text was already forwarded, so a retry would have duplicated it.
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn harmless_junk_is_ignored() {
    let fake = FakeLlm::start(vec![Behaviour::Malformed(vec![
        ": this is a comment".into(),
        "".into(),
        "".into(),
        "event: completion".into(),
        "id: 17".into(),
        "retry: 3000".into(),
        "some line without colon".into(),
        "x-custom: whatever".into(),
        r#"data: {"choices":[{"delta":{"role":"assistant"}}]}"#.into(),
        "".into(),
        r#"data: {"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}"#.into(),
        "".into(),
        ":keepalive\r".into(),
        "\r".into(),
        r#"data: {"choices":[{"delta":{"content":null}}]}"#.into(),
        "".into(),
        r#"data: {"choices":[{"delta":"#.into(),
        r#"data:  {"content":" there"}}]}"#.into(),
        "".into(),
        r#"data: {"choices":[{"delta":{},"finish_reason":"length"}]}"#.into(),
        "".into(),
        "data: [DONE]".into(),
        "".into(),
    ])])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (res, text) = run(&client).await;
    let stats = res.unwrap();
    assert_eq!(text, "Hi there");
    assert_eq!(stats.finish_reason.as_deref(), Some("length"));
    // No usage was sent, so the delta count stands in.
    assert_eq!(stats.completion_tokens, 2);
    assert_eq!(stats.prompt_tokens, None);
}

#[tokio::test]
async fn finish_reason_without_done_is_ok() {
    let fake = FakeLlm::start(vec![Behaviour::Malformed(vec![
        r#"data: {"choices":[{"delta":{"content":"end"}}]}"#.into(),
        "".into(),
        r#"data: {"choices":[{"delta":{},"finish_reason":"stop"}]}"#.into(),
        "".into(),
    ])])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (res, text) = run(&client).await;
    assert_eq!(res.unwrap().finish_reason.as_deref(), Some("stop"));
    assert_eq!(text, "end");
}

#[tokio::test]
async fn error_object_inside_stream() {
    let fake = FakeLlm::start(vec![Behaviour::Malformed(vec![
        r#"data: {"choices":[{"delta":{"content":"par"}}]}"#.into(),
        "".into(),
        r#"data: {"error":{"message":"out of memory","code":500}}"#.into(),
        "".into(),
    ])])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (res, _) = run(&client).await;
    match res.unwrap_err() {
        OpenAiError::ServerError {
            code: Some(500),
            after_tokens: 1,
            message,
            ..
        } => assert_eq!(message, "out of memory"),
        e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn disconnect_mid_stream_is_not_retried() {
    let fake = FakeLlm::start(vec![
        Behaviour::DisconnectAfter {
            pieces: pieces(&["one ", "two ", "three"]),
            n: 2,
        },
        Behaviour::Stream {
            pieces: pieces(&["should not be used"]),
            delay_ms: 0,
        },
    ])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (res, text) = run(&client).await;
    let err = res.unwrap_err();
    assert!(matches!(err, OpenAiError::Disconnected { after_tokens: 2, .. }), "{err:?}");
    assert_eq!(text, "one two ");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn close_delimited_stream_cut_without_finish_is_disconnected() {
    let fake = FakeLlm::start(vec![Behaviour::Malformed(vec![
        r#"data: {"choices":[{"delta":{"content":"half"}}]}"#.into(),
        "".into(),
    ])])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (res, _) = run(&client).await;
    assert!(matches!(res, Err(OpenAiError::Disconnected { after_tokens: 1, .. })), "{res:?}");
}

#[tokio::test]
async fn disconnect_before_first_token_is_retried() {
    let fake = FakeLlm::start(vec![
        Behaviour::DisconnectAfter {
            pieces: pieces(&["x"]),
            n: 0,
        },
        Behaviour::Stream {
            pieces: pieces(&["ok"]),
            delay_ms: 0,
        },
    ])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (res, text) = run(&client).await;
    assert_eq!(res.unwrap().attempts, 2);
    assert_eq!(text, "ok");
}

#[tokio::test]
async fn dropping_receiver_cancels_promptly_and_closes_connection() {
    let fake = FakeLlm::start(vec![Behaviour::SlowStream {
        piece: "tok ".into(),
        interval_ms: 200,
        count: 100,
    }])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (tx, mut rx) = mpsc::channel::<String>(16);
    let handle = tokio::spawn(async move {
        let client = client;
        let t = Instant::now();
        let r = client.stream_chat(&msgs(), &params(), &tx).await;
        (r, t)
    });
    // Take two tokens, then walk away like a gRPC caller that hung up.
    assert_eq!(rx.recv().await.as_deref(), Some("tok "));
    assert_eq!(rx.recv().await.as_deref(), Some("tok "));
    let dropped_at = Instant::now();
    drop(rx);
    let (res, _) = handle.await.unwrap();
    let returned_after = dropped_at.elapsed();
    assert!(matches!(res, Err(OpenAiError::Cancelled)), "{res:?}");
    // The next piece is 200 ms away; returning well before that proves the
    // client reacted to the closed channel rather than to a failed send.
    assert!(returned_after < Duration::from_millis(150), "{returned_after:?}");
    assert!(
        fake.wait_client_closed(Duration::from_secs(2)).await,
        "server did not see the close"
    );
    assert!(fake.requests()[0].client_closed_early);
}

#[tokio::test]
async fn dropping_receiver_while_waiting_for_headers_cancels() {
    let fake = FakeLlm::start(vec![Behaviour::Hang]).await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (tx, rx) = mpsc::channel::<String>(16);
    let handle = tokio::spawn(async move { client.stream_chat(&msgs(), &params(), &tx).await });
    // Wait until the request has actually reached the server.
    let t = Instant::now();
    while fake.requests().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(rx);
    let res = tokio::time::timeout(Duration::from_millis(500), handle)
        .await
        .expect("not prompt")
        .unwrap();
    assert!(matches!(res, Err(OpenAiError::Cancelled)), "{res:?}");
    assert!(fake.wait_client_closed(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn closed_channel_before_start_sends_nothing() {
    let fake = FakeLlm::start(vec![Behaviour::Stream {
        pieces: pieces(&["x"]),
        delay_ms: 0,
    }])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (tx, rx) = mpsc::channel::<String>(1);
    drop(rx);
    let res = client.stream_chat(&msgs(), &params(), &tx).await;
    assert!(matches!(res, Err(OpenAiError::Cancelled)));
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn api_key_is_sent_but_never_shown() {
    let fake = FakeLlm::start(vec![
        Behaviour::Stream {
            pieces: pieces(&["x"]),
            delay_ms: 0,
        },
        Behaviour::Status(401, r#"{"error":{"message":"invalid api key"}}"#.into()),
        // Real servers echo the key they were sent (OpenAI: "Incorrect API
        // key provided: sk-…"), and some the whole header.
        Behaviour::Status(
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-test-SECRET-42 (Authorization: Bearer sk-test-SECRET-42)"}}"#.into(),
        ),
        Behaviour::Status(401, "Incorrect API key provided: sk-test-SECRET-42".into()),
    ])
    .await;
    let mut c = cfg(&fake.url());
    c.api_key = Some("sk-test-SECRET-42".into());
    let client = OpenAiClient::new(c.clone()).unwrap();
    let (res, _) = run(&client).await;
    res.unwrap();
    assert_eq!(fake.requests()[0].header("Authorization"), Some("Bearer sk-test-SECRET-42"));
    assert!(!format!("{c:?}").contains("SECRET"));
    assert!(!format!("{client:?}").contains("SECRET"));

    let (res, _) = run(&client).await;
    let err = res.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(shown.contains("api_key"), "{shown}");

    // An error body that repeats the key, as JSON and as plain text.
    for _ in 0..2 {
        let (res, _) = run(&client).await;
        let err = res.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("Incorrect API key provided: [redacted]"), "{shown}");
    }
}

#[tokio::test]
async fn models_lists_ids() {
    let fake = FakeLlm::start(vec![Behaviour::Models(vec!["qwen".into(), "llama".into()])]).await;
    let mut c = cfg(&fake.url());
    c.api_key = Some("k".into());
    let client = OpenAiClient::new(c).unwrap();
    assert_eq!(client.models().await.unwrap(), vec!["qwen", "llama"]);
    let r = &fake.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/v1/models"));
    assert_eq!(r.header("authorization"), Some("Bearer k"));
}

#[tokio::test]
async fn models_refused() {
    let url = format!("http://127.0.0.1:{}/v1", refused_port());
    let client = OpenAiClient::new(cfg(&url)).unwrap();
    let err = client.models().await.unwrap_err();
    assert!(matches!(err, OpenAiError::Connect { attempts: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("/v1/models"));
}

#[tokio::test]
async fn non_streamed_json_answer_is_accepted() {
    let fake = FakeLlm::start(vec![Behaviour::Status(
        200,
        r#"{"choices":[{"message":{"role":"assistant","content":"whole answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#.into(),
    )])
    .await;
    let client = OpenAiClient::new(cfg(&fake.url())).unwrap();
    let (res, text) = run(&client).await;
    let stats = res.unwrap();
    assert_eq!(text, "whole answer");
    assert_eq!((stats.prompt_tokens, stats.completion_tokens), (Some(3), 2));
}
