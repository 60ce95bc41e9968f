//! Markdown, HTML and Chinese text end to end; files that fail end `failed`
//! with a reason while the daemon and the other books carry on.

use std::time::Duration;

use mindory_proto::pb;

use crate::support::{cli, cli_json, copy_into, corpus, fixture, TestDaemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn formats_chinese_and_contained_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("books");
    let good = copy_into(
        &dir,
        &[
            corpus("txt/CalltoArms.txt"),
            fixture("looking-glass.md"),
            fixture("federalist-10.html"),
            corpus("epub/pp.epub"),
        ],
    );
    // A zip bomb dressed as an EPUB.
    let bomb = dir.join("bigzero.epub");
    std::fs::copy(corpus("malformed/zip/bigzero-zip.zip"), &bomb).unwrap();
    // A binary file dressed as text, and a file that makes the parser panic
    // (the `test-hooks` feature plants the panic).
    let garbage = dir.join("garbage.txt");
    std::fs::write(
        &garbage,
        (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let panicky = dir.join("mindory-test-panic.txt");
    std::fs::write(&panicky, "This text is fine, but the parser is told to panic on this file name.").unwrap();
    let unsupported = dir.join("notes.xyz");
    std::fs::write(&unsupported, "whatever").unwrap();
    // The worker reports its environment on this name (test hooks).
    let env_probe = dir.join("mindory-test-env.txt");
    std::fs::write(&env_probe, "What does the parse worker see?").unwrap();
    // An empty file is no book: refused at once, never queued.
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();

    let daemon = TestDaemon::start(tmp.path()).await;
    let mut paths = good.clone();
    paths.extend([
        garbage.clone(),
        panicky.clone(),
        unsupported.clone(),
        bomb.clone(),
        env_probe.clone(),
        empty.clone(),
    ]);
    let results = daemon.add(&paths).await;
    let rejected: Vec<_> = results.iter().filter(|r| r.outcome == pb::AddOutcome::Rejected as i32).collect();
    assert_eq!(rejected.len(), 2, "{results:?}");
    assert!(rejected[0].reason.contains("unsupported format"), "{}", rejected[0].reason);
    assert!(
        rejected[1].path.ends_with("empty.txt") && rejected[1].reason.contains("empty"),
        "{:?}",
        rejected[1]
    );
    daemon.wait_idle(Duration::from_secs(600)).await;

    let failed = cli_json(&daemon.socket, &["books", "--json"]).await;
    let by_name = |name: &str| {
        failed
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["path"].as_str().unwrap().ends_with(name))
            .cloned()
            .unwrap()
    };
    let g = by_name("garbage.txt");
    assert_eq!(g["status"], "failed");
    assert!(g["error"].as_str().unwrap().contains("not a text file"), "{g}");
    let p = by_name("mindory-test-panic.txt");
    assert_eq!(p["status"], "failed");
    assert!(p["error"].as_str().unwrap().contains("parser crashed"), "{p}");
    // The sandboxed parser gets an allow-listed environment only: not this
    // test process's PATH, HOME, CARGO_* or MINDORY_* variables (nor an API key).
    let e = by_name("mindory-test-env.txt");
    let seen = e["error"].as_str().unwrap();
    // "… parser crashed (panic: environment: LANG,…); the file is …"
    let names = seen
        .split("environment: ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("{e}"));
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        assert!(
            mindory_daemon::parse::sandbox::WORKER_ENV.contains(&name) || name == "MINDORY_PARSE_TEST_HOOKS",
            "the worker saw {name}: {seen}"
        );
    }
    assert!(std::env::var_os("PATH").is_some() && !names.contains("PATH"), "{seen}");
    let out = cli(&daemon.socket, &["books", "--failed"]).await;
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("garbage.txt") && listing.contains("parser crashed") && !listing.contains("CalltoArms"),
        "{listing}"
    );

    let b = by_name("bigzero.epub");
    assert_eq!(b["status"], "failed");
    assert!(b["error"].as_str().unwrap().contains("not an EPUB"), "{b}");

    for name in ["CalltoArms.txt", "looking-glass.md", "federalist-10.html", "pp.epub"] {
        assert_eq!(by_name(name)["status"], "ready", "{name}");
    }
    let md = by_name("looking-glass.md");
    assert_eq!(md["title"], "Through the Looking-Glass (excerpt)");
    assert_eq!(md["author"], "Lewis Carroll");
    assert_eq!(md["format"], "md");
    let html = by_name("federalist-10.html");
    assert_eq!(html["title"], "The Federalist No. 10");
    assert_eq!(html["author"], "James Madison");

    let epub = by_name("pp.epub");
    assert_eq!(
        (epub["title"].as_str(), epub["author"].as_str(), epub["format"].as_str()),
        (Some("Pride and Prejudice"), Some("Jane Austen"), Some("epub"))
    );
    let hits = daemon
        .search("Darcy confesses to Elizabeth that he has fought his feelings in vain and cannot suppress how passionately he admires and loves her", 1)
        .await;
    assert!(hits[0].path.ends_with("pp.epub"), "{:?}", hits[0].path);
    assert_eq!(hits[0].location.as_ref().unwrap().chapter, "Chapter 34");
    assert!(hits[0].text.contains("ardently"), "{}", hits[0].text);

    // Reading opens the book where the hit points, and by chapter.
    let epub_id = epub["id"].as_u64().unwrap().to_string();
    let loc = hits[0].location.clone().unwrap();
    let out = cli(
        &daemon.socket,
        &["read", &epub_id, "--at", &loc.start.to_string(), "--chars", "3000"],
    )
    .await;
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && page.starts_with("Pride and Prejudice — Chapter 34"),
        "{page}"
    );
    assert!(page.contains("ardently"), "{page}");
    let book = mindory_proto::pb::library_client::LibraryClient::new(daemon.channel().await)
        .get_book(pb::GetBookRequest {
            id: epub["id"].as_u64().unwrap(),
        })
        .await
        .unwrap()
        .into_inner();
    let n = book.sections.iter().position(|s| s.heading == "Chapter 34").unwrap() + 1;
    assert!(book.sections[n - 1].chunks > 0);
    let out = cli(&daemon.socket, &["read", &epub_id, "--chapter", &n.to_string()]).await;
    let chapter = String::from_utf8_lossy(&out.stdout);
    assert!(
        chapter.contains("In vain I have struggled") && !chapter.contains("Chapter 35"),
        "{chapter}"
    );
    let out = cli(&daemon.socket, &["read", &epub_id, "--page", "3"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no page numbers"));

    // Chinese text is searchable.
    let hits = daemon.search("我在年青时候也曾经做过许多梦", 3).await;
    assert!(hits[0].path.ends_with("CalltoArms.txt"), "{:?}", hits[0].path);
    // Markdown headings become the location.
    let hits = daemon.search("slithy toves gyre and gimble in the wabe", 1).await;
    assert_eq!(
        hits[0].location.as_ref().unwrap().chapter,
        "Chapter I. Looking-Glass House › Jabberwocky"
    );
    // HTML: script and style text is never indexed.
    let hits = daemon.search("tracking marker script text", 20).await;
    assert!(hits
        .iter()
        .all(|h| !h.text.contains("trackingMarker") && !h.text.contains("font-family")));
    let hits = daemon.search("how to cure the mischiefs of faction", 1).await;
    assert!(hits[0].path.ends_with("federalist-10.html"));

    // After the parser crash, later files still ingest.
    let later = copy_into(&tmp.path().join("later"), &[corpus("txt/constitution.txt")]);
    let out = cli(&daemon.socket, &["add", "--wait", later[0].to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hits = daemon
        .search("the President shall be Commander in Chief of the Army and Navy", 1)
        .await;
    assert!(hits[0].path.ends_with("constitution.txt"));
    daemon.stop().await;
}
