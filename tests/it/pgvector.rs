//! The vector index on PostgreSQL with pgvector (a real server from
//! `scripts/pg-test-server`): switching backend on a library rebuilds the
//! index from stored vectors without embedding anything again, two daemons
//! with their own library names share one database without seeing each
//! other's vectors (and a third with a name in use does not start), a book filter still returns k passages, and a database
//! that is down at start stops the daemon with a message that says what to
//! do. TLS goes through PgBouncer (this PostgreSQL build has none): the
//! server is checked as libpq's `sslmode` says, and a client certificate
//! logs in; a pooler in transaction mode is refused with a message saying
//! why. The shared scenarios (ingest, search, moves, removal, restart) run on
//! both backends in `folders.rs`.
//!
//! Everything here embeds the small fixtures with potion-base-8M, which
//! makes ingest near-instant: the tests are about where vectors live.

use std::path::PathBuf;
use std::time::Duration;

use mindory_proto::pb;

use crate::support::{fixture, mindoryd_command, Backend, PgServer, TestDaemon, TestPki};

const LIMIT: Duration = Duration::from_secs(60);

fn small_model(c: &mut mindory_daemon::Config) {
    c.embedding_model = "potion-base-8M".into();
}

/// Starts a daemon on `root` with potion-base-8M and its index on `backend`.
async fn start(root: &std::path::Path, backend: &Backend) -> TestDaemon {
    TestDaemon::start_at_with(root.to_path_buf(), root.join("run").join("mindoryd.sock"), root.join("data"), |c| {
        small_model(c);
        backend.configure(c);
    })
    .await
}

/// (book, chunk id) of a vector-only search: what the vector index alone
/// returns.
async fn vector_hits(daemon: &TestDaemon, query: &str, k: u32, books: &[u64]) -> Vec<(u64, u64)> {
    daemon
        .search_with(query, k, books, pb::SearchMode::Vector)
        .await
        .iter()
        .map(|h| (h.book_id, h.chunk_id))
        .collect()
}

const QUERY: &str = "the powers of Congress to lay and collect taxes";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_backend_rebuilds_from_stored_vectors_without_reembedding() {
    let pg = PgServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = ["constitution.txt", "federalist-10.html", "looking-glass.md"]
        .iter()
        .map(|f| fixture(f))
        .collect();

    // A library built on usearch.
    let daemon = start(tmp.path(), &Backend::Usearch).await;
    daemon.add(&files).await;
    daemon.wait_idle(LIMIT).await;
    assert!(daemon.status().await.embedded_since_start > 0);
    let on_usearch = vector_hits(&daemon, QUERY, 5, &[]).await;
    assert_eq!(on_usearch.len(), 5);
    daemon.stop().await;

    // The same library on pgvector: the index is rebuilt from the stored
    // vectors; nothing is embedded, and the same passages come back.
    let pgvector = pg.backend("");
    let daemon = start(tmp.path(), &pgvector).await;
    assert_eq!(daemon.status().await.embedded_since_start, 0, "switching backend re-embeds nothing");
    // usearch stores f16 and pgvector f32, so near ties may change places:
    // the best passage is the same and the lists nearly are.
    let on_pgvector = vector_hits(&daemon, QUERY, 5, &[]).await;
    assert_eq!(on_pgvector[0], on_usearch[0], "{on_pgvector:?} vs {on_usearch:?}");
    let shared = on_pgvector.iter().filter(|h| on_usearch.contains(h)).count();
    assert!(shared >= 4, "{on_pgvector:?} vs {on_usearch:?}");

    // A book filter still returns k passages (pgvector's iterative scan
    // goes on past the first candidates the filter drops).
    let constitution = on_usearch[0].0;
    let filtered = vector_hits(&daemon, "a passage about anything", 8, &[constitution]).await;
    assert_eq!(filtered.len(), 8, "{filtered:?}");
    assert!(filtered.iter().all(|(book, _)| *book == constitution), "{filtered:?}");
    let other = daemon.books().await.into_iter().find(|b| b.id != constitution).unwrap();
    let filtered = vector_hits(&daemon, QUERY, 3, &[other.id]).await;
    assert!(
        !filtered.is_empty() && filtered.iter().all(|(book, _)| *book == other.id),
        "{filtered:?}"
    );

    // A change while on pgvector is searchable when the book is ready, and
    // a restart on pgvector loads the table rather than rebuilding it.
    let removed = daemon
        .books()
        .await
        .into_iter()
        .find(|b| b.path.ends_with("looking-glass.md"))
        .unwrap();
    let out = crate::support::cli(&daemon.socket, &["rm", &removed.id.to_string()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    daemon.wait_idle(LIMIT).await;
    let after_remove = vector_hits(&daemon, "the looking-glass", 20, &[]).await;
    assert!(after_remove.iter().all(|(book, _)| *book != removed.id), "{after_remove:?}");
    daemon.stop().await;
    let daemon = start(tmp.path(), &pgvector).await;
    assert_eq!(vector_hits(&daemon, "the looking-glass", 20, &[]).await, after_remove);
    daemon.stop().await;

    // And back to usearch: its saved file is from before the removal, so it
    // is rebuilt from the store too; still nothing is embedded.
    let daemon = start(tmp.path(), &Backend::Usearch).await;
    assert_eq!(daemon.status().await.embedded_since_start, 0);
    let kept: Vec<(u64, u64)> = on_usearch.iter().copied().filter(|(b, _)| *b != removed.id).take(3).collect();
    assert_eq!(vector_hits(&daemon, QUERY, 5, &[]).await[..3], kept[..]);
    let mut again = vector_hits(&daemon, "the looking-glass", 20, &[]).await;
    let mut expected = after_remove.clone();
    again.sort_unstable();
    expected.sort_unstable();
    assert_eq!(again, expected, "the same passages are indexed");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_libraries_in_one_database_keep_apart() {
    let pg = PgServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alpha = start(a.path(), &pg.backend("alpha")).await;
    let beta = start(b.path(), &pg.backend("beta")).await;
    alpha.add(&[fixture("constitution.txt")]).await;
    beta.add(&[fixture("looking-glass.md"), fixture("federalist-10.html")]).await;
    alpha.wait_idle(LIMIT).await;
    beta.wait_idle(LIMIT).await;

    // Each finds only its own books, whatever the query is about.
    for daemon in [&alpha, &beta] {
        let own: Vec<String> = daemon.books().await.into_iter().map(|b| b.path).collect();
        for query in [QUERY, "Alice walks through the looking-glass", "the mischiefs of faction"] {
            let hits = daemon.search_with(query, 10, &[], pb::SearchMode::Vector).await;
            assert!(!hits.is_empty());
            assert!(hits.iter().all(|h| own.contains(&h.path)), "{query}: {hits:?}");
        }
    }
    let constitution_passages = alpha.books().await[0].chunks as usize;
    let hits = alpha.search_with(QUERY, 200, &[], pb::SearchMode::Vector).await;
    assert_eq!(hits.len(), constitution_passages, "alpha's index holds alpha's vectors only");

    // A third daemon configured with alpha's name (a copy-pasted
    // config.toml) does not start: it would rebuild over alpha's vectors.
    let c = tempfile::tempdir().unwrap();
    let Backend::Pgvector { url, .. } = pg.backend("alpha") else {
        unreachable!()
    };
    let stderr = refused_start(
        c.path(),
        &[
            ("MINDORY_INDEX_BACKEND", "pgvector"),
            ("MINDORY_PG_URL", &url),
            ("MINDORY_INDEX_LIBRARY", "alpha"),
            ("MINDORY_EMBEDDING_MODEL", "potion-base-8M"),
        ],
    )
    .await;
    assert!(
        stderr.contains("the library `alpha`") && stderr.contains("in use by another daemon") && stderr.contains("MINDORY_INDEX_LIBRARY"),
        "{stderr}"
    );
    let hits = alpha.search_with(QUERY, 200, &[], pb::SearchMode::Vector).await;
    assert_eq!(hits.len(), constitution_passages, "alpha's index is untouched");

    // Once alpha stops, its library is free: a daemon started on alpha's
    // data directory again takes it back.
    alpha.stop().await;
    let alpha = start(a.path(), &pg.backend("alpha")).await;
    let hits = alpha.search_with(QUERY, 200, &[], pb::SearchMode::Vector).await;
    assert_eq!(hits.len(), constitution_passages);
    alpha.stop().await;
    beta.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_at_start_is_a_clear_error() {
    // A socket directory where no server listens: what a stopped server
    // leaves (starting one to stop it costs an initdb).
    let tmp = tempfile::tempdir().unwrap();
    let down = tmp.path().join("pg");
    std::fs::create_dir(&down).unwrap();
    let url = format!("postgresql://postgres@{}/postgres", down.display().to_string().replace('/', "%2F"));
    // The real binary, configured through the environment as a user would.
    let stderr = refused_start(
        tmp.path(),
        &[
            ("MINDORY_INDEX_BACKEND", "pgvector"),
            ("MINDORY_PG_URL", &url),
            ("MINDORY_EMBEDDING_MODEL", "potion-base-8M"),
        ],
    )
    .await;
    assert!(
        stderr.contains("cannot connect to PostgreSQL at postgresql://postgres@") && stderr.contains("MINDORY_PG_URL"),
        "{stderr}"
    );
}

/// Runs the real `mindoryd` on `root`, configured through the environment
/// as a user would, expecting it to refuse to start: it must exit within
/// the limit, unsuccessfully, having served nothing. Returns its stderr.
async fn refused_start(root: &std::path::Path, env: &[(&str, &str)]) -> String {
    let (mut command, socket) = mindoryd_command(root, env);
    let out = tokio::time::timeout(LIMIT, command.output())
        .await
        .expect("mindoryd gives up at once")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(mindory_proto::connect(&socket).await.is_err(), "nothing is served");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_checks_the_server_as_sslmode_says_and_poolers_in_transaction_mode_are_refused() {
    let pg = PgServer::start();
    let pki = TestPki::new();
    // PgBouncer with TLS only: a plain connection is refused, so whatever
    // works below went over TLS.
    let url = pg.bouncer("session", Some(&pki));
    let port = url.rsplit(':').next().unwrap().trim_end_matches("/postgres").to_string();
    let ca = pki.file("ca.pem");

    // The whole daemon over a fully checked connection: it indexes a book
    // and finds it by meaning.
    let tmp = tempfile::tempdir().unwrap();
    let checked = format!("{url}?sslmode=verify-full&sslrootcert={ca}");
    let daemon = start(
        tmp.path(),
        &Backend::Pgvector {
            url: checked,
            library: "tls".into(),
        },
    )
    .await;
    daemon.add(&[fixture("constitution.txt")]).await;
    daemon.wait_idle(LIMIT).await;
    let hits = vector_hits(&daemon, QUERY, 3, &[]).await;
    assert_eq!(hits.len(), 3, "found by meaning over TLS");
    daemon.stop().await;

    // What each mode lets through, at the index's own connect (blocking,
    // so off the async threads).
    let connect = |url: String| async move {
        tokio::task::spawn_blocking(move || {
            mindory_daemon::index::pgvector::PgLibrary::connect(&url, "probe")
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap()
    };
    let plain = connect(format!("{url}?sslmode=disable")).await.unwrap_err();
    assert!(plain.contains("SSL required"), "{plain}");
    // require encrypts without checking: a self-made certificate passes.
    connect(format!("{url}?sslmode=require")).await.unwrap();
    let stranger = connect(format!("{url}?sslmode=verify-full&sslrootcert={}", pki.file("other-ca.pem")))
        .await
        .unwrap_err();
    assert!(
        stranger.contains("invalid peer certificate") && stranger.contains("check sslmode and sslrootcert"),
        "{stranger}"
    );
    // The certificate names localhost: verify-full refuses another name,
    // verify-ca checks only the chain.
    let by_ip = format!("postgresql://postgres@127.0.0.1:{port}/postgres");
    let wrong_name = connect(format!("{by_ip}?sslmode=verify-full&sslrootcert={ca}")).await.unwrap_err();
    assert!(wrong_name.contains("not valid for name"), "{wrong_name}");
    connect(format!("{by_ip}?sslmode=verify-ca&sslrootcert={ca}")).await.unwrap();
    // The key=value form, and a role that logs in by certificate alone.
    let certuser = format!(
        "host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full sslrootcert='{ca}' sslcert='{}' sslkey='{}'",
        pki.file("client.crt"),
        pki.file("client.key")
    );
    connect(certuser).await.unwrap();
    let no_cert = connect(format!("host=localhost port={port} user=certuser dbname=postgres sslmode=require"))
        .await
        .unwrap_err();
    assert!(no_cert.contains("cannot connect to PostgreSQL"), "{no_cert}");

    // The real binary, told to trust the wrong authority, does not start
    // and says why.
    let stderr = refused_start(
        tmp.path(),
        &[
            ("MINDORY_INDEX_BACKEND", "pgvector"),
            (
                "MINDORY_PG_URL",
                &format!("{url}?sslmode=verify-full&sslrootcert={}", pki.file("other-ca.pem")),
            ),
            ("MINDORY_EMBEDDING_MODEL", "potion-base-8M"),
        ],
    )
    .await;
    assert!(
        stderr.contains("invalid peer certificate") && stderr.contains("sslrootcert"),
        "{stderr}"
    );

    // A pooler in transaction mode would hand the library's session lock
    // to whichever client comes next: the daemon says so and does not start.
    let pooled = pg.bouncer("transaction", Some(&pki));
    let stderr = refused_start(
        tmp.path(),
        &[
            ("MINDORY_INDEX_BACKEND", "pgvector"),
            ("MINDORY_PG_URL", &format!("{pooled}?sslmode=require")),
            ("MINDORY_EMBEDDING_MODEL", "potion-base-8M"),
        ],
    )
    .await;
    assert!(
        stderr.contains("pooler in transaction mode") && stderr.contains("session mode"),
        "{stderr}"
    );
}
