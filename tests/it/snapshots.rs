//! Snapshot tests: what every corpus file parses into, and what the CLI
//! prints for people. A format regression or a changed table then shows up
//! as a small diff of a committed file (`tests/it/snapshots/`), not as a
//! distant search test failing.
//!
//! To accept a deliberate change: run the test with `INSTA_UPDATE=always`
//! (or `cargo insta review` where cargo-insta is installed) and commit the
//! new `.snap` files after reading their diff.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::{cli, cli_json, corpus, daemon_path, fixture, TestDaemon};

/// Headings listed per file; more are counted, not listed, so a long
/// manual's snapshot stays readable.
const MAX_HEADINGS: usize = 60;

/// How many characters of a block a summary quotes.
const QUOTE_CHARS: usize = 100;

/// One snapshot per corpus folder, each holding a summary of every file in
/// it. The speeches folder (233 plain-text files of one kind) and the eval
/// question sets are not books of distinct formats: three speeches stand
/// for the folder.
#[test]
fn every_corpus_file_parses_into_its_snapshot() {
    let root = corpus("");
    let scratch = tempfile::tempdir().unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for folder in [
            "docx",
            "epub",
            "fb2",
            "html",
            "malformed",
            "mobi",
            "odt",
            "pdf",
            "rtf",
            "sotu",
            "txt",
        ] {
            let mut files = files_under(&root.join(folder));
            if folder == "sotu" {
                files.truncate(3);
            }
            let mut report = String::new();
            for file in &files {
                let rel = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
                // Broken files are read as what they claim to be, the way
                // the malformed-corpus test adds them: fuzzed PDFs (some
                // named `.fuzz`) as PDFs, each broken zip as every zip-based
                // format.
                let read_as: &[&str] = if rel.starts_with("malformed/pdf/") {
                    &["pdf"]
                } else if rel.starts_with("malformed/zip/") {
                    &["epub", "docx", "odt"]
                } else {
                    &[]
                };
                if read_as.is_empty() {
                    writeln!(report, "== {rel}\n{}", dump_summary(file, &rel)).unwrap();
                }
                for ext in read_as {
                    let copy = scratch.path().join(file.file_name().unwrap()).with_extension(ext);
                    std::fs::copy(file, &copy).unwrap();
                    writeln!(report, "== {rel} as .{ext}\n{}", dump_summary(&copy, &rel)).unwrap();
                    std::fs::remove_file(&copy).unwrap();
                }
            }
            insta::assert_snapshot!(format!("parse-{folder}"), report);
        }
        let mut report = String::new();
        for name in [
            "constitution.txt",
            "federalist-10.html",
            "looking-glass.md",
            "owner-password-only.pdf",
        ] {
            writeln!(report, "== fixtures/{name}\n{}", dump_summary(&fixture(name), name)).unwrap();
        }
        insta::assert_snapshot!("parse-fixtures", report);
    });
}

/// Every regular file under `dir`, sorted, skipping the licence and source
/// notes that sit beside the books.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.file_name().unwrap().to_string_lossy().to_lowercase();
                if !(name.starts_with("readme") || name.starts_with("license") || name.starts_with("licence") || name == "sources.md") {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    files
}

/// Runs `mindoryd __parse-dump FILE` and condenses what it prints: the
/// metadata line, counts, the pages seen, the heading outline, the first and
/// last block, and a hash of the whole dump (so any change to any block
/// shows, and the other lines say where to look). A file that does not parse
/// gives its error, with the file's own path shortened to `rel`.
fn dump_summary(file: &Path, rel: &str) -> String {
    let out = std::process::Command::new(daemon_path())
        .arg("__parse-dump")
        .arg(file)
        .output()
        .expect("run mindoryd __parse-dump");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).replace(&file.to_string_lossy().into_owned(), rel);
        return format!("error: {}", err.trim());
    }
    let dump = String::from_utf8_lossy(&out.stdout);
    let mut lines = dump.lines();
    let meta = lines.next().unwrap_or_default().to_string();
    let blocks: Vec<&str> = lines.collect();
    let mut pages: Vec<&str> = Vec::new();
    let mut headings = Vec::new();
    let mut chars = 0usize;
    for block in &blocks {
        let (page, rest) = match block.strip_prefix("[p.").and_then(|b| b.split_once("] ")) {
            Some((p, rest)) => (Some(p), rest),
            None => (None, *block),
        };
        if let Some(p) = page {
            if pages.last() != Some(&p) {
                pages.push(p);
            }
        }
        chars += rest.chars().count();
        if rest.starts_with('#') {
            headings.push(match page {
                Some(p) => format!("{} [p.{p}]", quote(rest)),
                None => quote(rest),
            });
        }
    }
    let mut s = format!("{meta}\nblocks {} | chars {chars} | headings {}", blocks.len(), headings.len());
    match (pages.first(), pages.last()) {
        (Some(first), Some(last)) => write!(s, " | page runs {} from p.{first} to p.{last}", pages.len()).unwrap(),
        _ => s.push_str(" | no pages"),
    }
    for h in headings.iter().take(MAX_HEADINGS) {
        write!(s, "\n  {h}").unwrap();
    }
    if headings.len() > MAX_HEADINGS {
        write!(s, "\n  … {} more", headings.len() - MAX_HEADINGS).unwrap();
    }
    if let (Some(first), Some(last)) = (blocks.first(), blocks.last()) {
        write!(s, "\nfirst: {}\nlast: {}", quote(first), quote(last)).unwrap();
    }
    let hash = Sha256::digest(dump.as_bytes());
    write!(s, "\nsha256 {}", &hex(&hash)[..16]).unwrap();
    s
}

/// The first `QUOTE_CHARS` characters of a line.
fn quote(line: &str) -> String {
    let mut q: String = line.chars().take(QUOTE_CHARS).collect();
    if line.chars().count() > QUOTE_CHARS {
        q.push('…');
    }
    q
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What people read: `status`, `books`, `book`, `search`, `read` and the
/// failed-book listing on two small fixtures and one broken file. Volatile
/// parts (the temp dir, ids are stable but timings and versions are not)
/// are filtered out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_cli_output_matches_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let books = tmp.path().join("books");
    std::fs::create_dir_all(&books).unwrap();
    for name in ["constitution.txt", "looking-glass.md"] {
        std::fs::copy(fixture(name), books.join(name)).unwrap();
    }
    std::fs::write(books.join("broken.epub"), b"PK\x03\x04 this is not a zip archive").unwrap();
    let daemon = TestDaemon::start(tmp.path()).await;
    // `add --wait` exits non-zero because one book failed; its output is
    // snapshotted with the rest.
    let added = cli(&daemon.socket, &["add", "--wait", books.to_str().unwrap()]).await;
    daemon.wait_idle(Duration::from_secs(120)).await;

    let root = tmp.path().canonicalize().unwrap().to_string_lossy().into_owned();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(&regex_escape(&root), "[TMP]");
    settings.add_filter(&regex_escape(&tmp.path().to_string_lossy()), "[TMP]");
    // Versions, times and sizes change between builds and machines.
    settings.add_filter(r"\b\d+(\.\d+)?\s?(ms|s|µs|KiB|MiB|GiB|KB|MB|GB|B)\b", "[N unit]");
    settings.add_filter(r"\bv?\d+\.\d+\.\d+(-[\w.]+)?\b", "[VERSION]");
    settings.add_filter(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?\S*", "[TIME]");
    // Scores depend on float rounding in the embedding kernels.
    settings.add_filter(r"\b0\.\d{2,}\b", "[SCORE]");
    let _guard = settings.bind_to_scope();

    // Ids follow the order the scan met the files in; look them up.
    let listed = cli_json(&daemon.socket, &["books", "--json"]).await;
    let id_of = |file: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["path"].as_str().is_some_and(|p| p.ends_with(file)))
            .unwrap_or_else(|| panic!("{file} not listed: {listed}"))["id"]
            .to_string()
    };
    let constitution = id_of("constitution.txt");
    let looking_glass = id_of("looking-glass.md");
    // The two books finish in either order, so the progress lines are
    // sorted (the failure always comes last: it is reported at the end).
    let mut added_text = transcript(&["add", "--wait", "[TMP]/books"], &added);
    let mut progress: Vec<&str> = added_text.lines().skip(2).filter(|l| !l.starts_with("failed")).collect();
    progress.sort_unstable();
    let failed: Vec<&str> = added_text.lines().filter(|l| l.starts_with("failed")).collect();
    added_text = added_text
        .lines()
        .take(2)
        .chain(progress)
        .chain(failed)
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("cli-add-wait", added_text);
    for (name, args) in [
        ("cli-books", vec!["books"]),
        ("cli-books-failed", vec!["books", "--failed"]),
        ("cli-book", vec!["book", &constitution]),
        ("cli-search", vec!["search", "how old must a senator be"]),
        ("cli-search-scores", vec!["search", "--scores", "-k", "2", "Jabberwock"]),
        ("cli-search-phrase", vec!["search", "--book", &looking_glass, "\"slithy toves\""]),
        ("cli-read-chapter", vec!["read", &constitution, "--chapter", "2", "--chars", "400"]),
    ] {
        let out = cli(&daemon.socket, &args).await;
        insta::assert_snapshot!(name, transcript(&args, &out));
    }
    daemon.stop().await;
}

/// A command as a terminal shows it: the command line, its exit code, what
/// it printed to stdout, then to stderr.
fn transcript(args: &[&str], out: &std::process::Output) -> String {
    format!(
        "$ mindory {}\nexit {}\n{}{}",
        args.join(" "),
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A literal string as a regex.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
