//! What the daemon reads and what it writes down: no RPC reads a book's
//! file again after it was added (passages, search and Ask's context come
//! from the stored text, however the file changes or wherever a symbolic
//! link put in its place points), and the API key appears in no log line
//! and no CLI output, even at `-vv` and when an endpoint echoes it back.

use std::time::Duration;

use mindory_daemon::llm::fake::{Behaviour, FakeLlm};
use mindory_proto::pb::{self, library_client::LibraryClient};

use crate::support::{self, cli, fixture, mindoryd_command, TestDaemon};

/// The whole stored text of a small book, through `GetPassage`.
async fn passage(daemon: &TestDaemon, book_id: u64) -> String {
    LibraryClient::new(daemon.channel().await)
        .get_passage(pb::GetPassageRequest {
            book_id,
            at: Some(pb::get_passage_request::At::Offset(0)),
            max_chars: 0,
        })
        .await
        .expect("get passage")
        .into_inner()
        .text
}

/// The text of every passage the daemon hands out for `book_id` (the
/// passages a keyword search for `query` finds, and what Ask puts in the
/// prompt it sends) after the book's file was replaced, and checks that
/// each is stored text: never `foreign`, always what `stored` says.
async fn serves_only_stored_text(daemon: &TestDaemon, fake: &FakeLlm, book_id: u64, stored: &str, foreign: &str, when: &str) {
    assert_eq!(passage(daemon, book_id).await, stored, "{when}: GetPassage returns the stored text");
    let found = daemon.search_with(foreign, 5, &[], pb::SearchMode::Keyword).await;
    assert!(found.is_empty(), "{when}: nothing stored holds `{foreign}`: {found:?}");
    let hits = daemon.search("slithy toves gyre and gimble", 3).await;
    assert!(
        hits.iter().all(|h| h.book_id == book_id && stored.contains(&h.text)),
        "{when}: every hit is stored text: {hits:?}"
    );
    fake.set_script(vec![Behaviour::stream(&["They gyre and gimble [1]."])]);
    let out = cli(&daemon.socket, &["ask", "What did the slithy toves do in the wabe?", "--json"]).await;
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{when}: {said}");
    assert!(!said.contains(foreign), "{when}: {said}");
    let prompt = fake
        .requests()
        .iter()
        .filter_map(|r| r.body.clone())
        .map(|b| b.to_string())
        .collect::<String>();
    assert!(
        prompt.contains("slithy toves") && !prompt.contains(foreign),
        "{when}: the prompt carries stored text only: {prompt}"
    );
}

/// A book's file overwritten, then replaced by a symbolic link to a secret
/// outside anything the user added: until someone asks for a reindex,
/// `GetPassage`, search and Ask's context serve the text stored when the
/// book was added, and nothing of the new file or the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passages_search_and_ask_serve_stored_text_only() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start(vec![Behaviour::stream(&["ok"])]).await;
    let url = fake.url();
    let daemon = TestDaemon::start_with(tmp.path(), move |c| {
        support::use_endpoint(c, url, "fake");
        // Every passage goes into Ask's context, however it scores: the
        // point is what the context is made of.
        c.llm.min_score = 0.0;
    })
    .await;
    // Added explicitly, not in a watched folder: nothing re-reads it.
    let book = tmp.path().join("looking-glass.md");
    std::fs::copy(fixture("looking-glass.md"), &book).unwrap();
    let out = cli(&daemon.socket, &["add", "--wait", book.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let book_id = daemon.books().await[0].id;
    let stored = passage(&daemon, book_id).await;
    assert!(stored.contains("slithy toves"), "{stored}");

    // The file now says something else.
    std::fs::write(&book, "Overwritten: the marmalade quorum convenes at dawn.\n").unwrap();
    serves_only_stored_text(&daemon, &fake, book_id, &stored, "marmalade", "overwritten").await;

    // The file is now a link to a secret the user never added.
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, "The vault combination is kumquatvexillum.\n").unwrap();
    std::fs::remove_file(&book).unwrap();
    std::os::unix::fs::symlink(&secret, &book).unwrap();
    serves_only_stored_text(&daemon, &fake, book_id, &stored, "kumquatvexillum", "a link to a secret").await;
    let listed = daemon.books().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].status, pb::BookStatus::Ready as i32, "{listed:?}");
    daemon.stop().await;
}

/// `mindoryd -vv` (trace) with an API key: one answer, then an endpoint
/// that answers 401 with the key and its `Bearer` header in the body, to
/// both Ask and the model listing. The key was sent, and neither the
/// daemon's whole log nor anything the CLI printed carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_reaches_a_log_or_the_cli_even_at_trace() {
    const KEY: &str = "sk-mindory-test-5f1e09c2d7b84a36";
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let fake = FakeLlm::start(vec![Behaviour::Models(vec!["fake".into()])]).await;
    let url = fake.url();
    let env = [
        ("MINDORY_LLM_BACKEND", "openai"),
        ("MINDORY_LLM_BASE_URL", url.as_str()),
        ("MINDORY_LLM_MODEL", "fake"),
        ("MINDORY_LLM_API_KEY_ENV", "MINDORY_TEST_API_KEY"),
        ("MINDORY_TEST_API_KEY", KEY),
        ("MINDORY_LLM_MIN_SCORE", "0"),
        ("MINDORY_LLM_MAX_RETRIES", "0"),
        // Fast embeddings: what is logged is the point, not the model.
        ("MINDORY_EMBEDDING_MODEL", "potion-base-8M"),
    ];
    let (mut command, socket) = mindoryd_command(root, &env);
    // `-vv` is trace for everything, unless RUST_LOG narrows it.
    command.env_remove("RUST_LOG").arg("-vv");
    let log_path = root.join("mindoryd.log");
    let mut child = command
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start mindoryd");
    support::eventually("mindoryd answers", Duration::from_secs(120), || async {
        cli(&socket, &["status"]).await.status.success().then_some(())
    })
    .await;

    // Everything the CLI prints, to search for the key at the end.
    let mut printed = String::new();
    fn kept(printed: &mut String, out: std::process::Output) -> std::process::Output {
        *printed += &String::from_utf8_lossy(&out.stdout);
        *printed += &String::from_utf8_lossy(&out.stderr);
        out
    }
    let book = root.join("looking-glass.md");
    std::fs::copy(fixture("looking-glass.md"), &book).unwrap();
    let out = kept(&mut printed, cli(&socket, &["add", "--wait", book.to_str().unwrap()]).await);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // An answer: the key goes to the endpoint, as a Bearer header.
    fake.set_script(vec![Behaviour::stream(&["They gyre and gimble [1]."])]);
    let question = "What did the slithy toves do?";
    let out = kept(&mut printed, cli(&socket, &["ask", question]).await);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sent = fake.requests();
    assert!(
        sent.iter().any(|r| r.header("authorization") == Some(&format!("Bearer {KEY}"))),
        "the key was sent: {sent:?}"
    );

    // The endpoint refuses the key and repeats it, with its header.
    let refusal = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {KEY}. You sent Authorization: Bearer {KEY}","type":"invalid_request_error"}}}}"#
    );
    fake.set_script(vec![Behaviour::Status(401, refusal)]);
    let out = kept(&mut printed, cli(&socket, &["ask", question]).await);
    assert!(!out.status.success(), "a refused key fails the answer");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = kept(&mut printed, cli(&socket, &["llm", "--json"]).await);
    let _ = kept(&mut printed, cli(&socket, &["llm"]).await);
    assert!(!fake.requests().is_empty(), "the endpoint was asked");

    let out = kept(&mut printed, cli(&socket, &["shutdown"]).await);
    assert!(out.status.success());
    let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("TRACE"), "the daemon logged at trace level");
    assert!(log.contains("401"), "the refusal was logged");
    for (what, text) in [("the daemon's log", log.as_str()), ("the CLI's output", printed.as_str())] {
        assert!(!text.contains(KEY), "{what} carries the API key");
        // Not even its random half (after `sk-mindory-test-`).
        assert!(!text.contains(&KEY[KEY.len() / 2..]), "{what} carries part of the API key");
    }
    println!(
        "the API key is in none of {} bytes of trace log and {} bytes of CLI output",
        log.len(),
        printed.len()
    );
}
