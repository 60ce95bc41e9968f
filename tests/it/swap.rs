//! Embedding model hot swap end to end, on the real `mindoryd` and both real
//! models: a library ingested with potion-base-8M (fast) is switched to
//! all-MiniLM-L6-v2 (slow enough to act on midway). A swap named back to
//! the active model is cancelled and leaves the library as it was; a swap
//! killed midway resumes at restart without re-embedding what it had
//! committed; searches keep answering, without errors, while a swap runs;
//! and at the end the library answers with the new model's vectors only.

use std::time::Duration;

use mindory_proto::models::{EMBEDDING_MODEL_ID, POTION_BASE_8M};
use mindory_proto::pb::{self, daemon_client::DaemonClient, search_client::SearchClient};

use crate::support::{cli, copy_into, corpus, eventually, fixture, spawn_mindoryd, start_mindoryd_with};

async fn status(socket: &std::path::Path) -> pb::StatusResponse {
    let channel = mindory_proto::connect(socket).await.expect("connect");
    DaemonClient::new(channel)
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner()
}

async fn use_model(socket: &std::path::Path, name: &str) -> pb::UseModelOutcome {
    let channel = mindory_proto::connect(socket).await.expect("connect");
    let response = DaemonClient::new(channel)
        .use_model(pb::UseModelRequest { name: name.into() })
        .await
        .expect("use model")
        .into_inner();
    pb::UseModelOutcome::try_from(response.outcome).unwrap()
}

/// The senator question's top hit, which must be the Constitution passage
/// whatever the model.
async fn senator(socket: &std::path::Path) -> pb::SearchHit {
    let channel = mindory_proto::connect(socket).await.expect("connect");
    let hits = SearchClient::new(channel)
        .search(pb::SearchRequest {
            query: "how old must a senator be".into(),
            k: 3,
            ..Default::default()
        })
        .await
        .expect("a search never fails during a swap")
        .into_inner()
        .hits;
    hits.into_iter().next().expect("a hit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn model_swap_cancels_resumes_after_kill_and_keeps_searching() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let files = copy_into(
        &root.join("books"),
        &[
            fixture("constitution.txt"),
            fixture("federalist-10.html"),
            corpus("txt/alice29.txt"),
        ],
    );
    let potion = [("MINDORY_EMBEDDING_MODEL", POTION_BASE_8M.name)];
    let (mut daemon, socket) = start_mindoryd_with(root, &potion).await;
    let mut args = vec!["add", "--wait"];
    let paths: Vec<String> = files.iter().map(|f| f.to_string_lossy().into_owned()).collect();
    args.extend(paths.iter().map(String::as_str));
    assert!(cli(&socket, &args).await.status.success());
    let before = status(&socket).await;
    assert_eq!(before.embedding_model, POTION_BASE_8M.id);
    let total = before.chunks;
    assert!(total > 200, "{total} passages");
    assert_eq!(before.vectors_indexed, total);
    let first = senator(&socket).await;
    assert!(first.text.contains("thirty Years"), "{first:?}");

    // Cancel: a swap to MiniLM (seconds of work), then the active model.
    assert_eq!(use_model(&socket, "all-MiniLM-L6-v2").await, pb::UseModelOutcome::Started);
    assert_eq!(use_model(&socket, "all-MiniLM-L6-v2").await, pb::UseModelOutcome::InProgress);
    assert_eq!(use_model(&socket, POTION_BASE_8M.name).await, pb::UseModelOutcome::Cancelled);
    let after = status(&socket).await;
    assert_eq!(after.embedding_model, POTION_BASE_8M.id);
    assert_eq!(after.swap, None);
    assert_eq!((after.chunks, after.vectors_indexed), (total, total));
    assert_eq!(senator(&socket).await.chunk_id, first.chunk_id);
    assert_eq!(use_model(&socket, POTION_BASE_8M.name).await, pb::UseModelOutcome::AlreadyActive);
    daemon.kill().await.unwrap();

    // Kill midway: the daemon aborts right after its second committed step.
    let (mut crashing, socket) = spawn_mindoryd(root, &[("MINDORY_CRASH_AT", "swap-committed:2")]);
    eventually("the daemon answers", Duration::from_secs(120), || {
        let socket = socket.clone();
        async move { cli(&socket, &["status"]).await.status.success().then_some(()) }
    })
    .await;
    assert_eq!(use_model(&socket, "all-MiniLM-L6-v2").await, pb::UseModelOutcome::Started);
    let aborted = tokio::time::timeout(Duration::from_secs(300), crashing.wait())
        .await
        .expect("the crash point is reached")
        .unwrap();
    assert!(!aborted.success(), "{aborted}");

    // Restart: the swap resumes from what was committed, searches keep
    // working (with potion) until the switch, then use MiniLM.
    let (_daemon, socket) = start_mindoryd_with(root, &[]).await;
    // Two steps of 64 distinct passages were committed before the kill.
    let committed = 2 * 64;
    let resumed = status(&socket).await;
    if let Some(swap) = &resumed.swap {
        assert_eq!(resumed.embedding_model, POTION_BASE_8M.id, "the old model serves until the switch");
        assert_eq!(swap.model, EMBEDDING_MODEL_ID);
        assert!(swap.done >= committed, "{swap:?}: the committed steps survived the kill");
    }
    let mut searches = 0;
    let finished = eventually("the swap finishes", Duration::from_secs(600), || {
        let socket = socket.clone();
        searches += 1;
        async move {
            let hit = senator(&socket).await;
            assert!(hit.text.contains("thirty Years"), "{hit:?}");
            let s = status(&socket).await;
            (s.swap.is_none() && s.embedding_model == EMBEDDING_MODEL_ID).then_some(s)
        }
    })
    .await;
    assert!(searches >= 1);
    assert_eq!((finished.chunks, finished.vectors_indexed), (total, total));
    // Nothing committed before the kill was embedded again (queries are
    // not counted).
    assert!(
        finished.embedded_since_start <= total - committed,
        "re-embedded {} passages after the restart; {} were left",
        finished.embedded_since_start,
        total - committed
    );
    let hit = senator(&socket).await;
    assert!(hit.text.contains("thirty Years"), "{hit:?}");
    let vector = hit.retrievers.iter().find(|r| r.retriever == "vector").expect("a vector score");
    assert!(vector.score > 0.3, "MiniLM's similarity for the right passage: {vector:?}");
}
