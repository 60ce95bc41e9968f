//! The crash loop: rounds of work on a watched folder, each ended by a
//! `kill -9` at a random moment or an abort at a named crash point, then a
//! restart. One implementation for two uses: CI runs a few rounds
//! (`MINDORY_CRASH_ROUNDS`, default [`CI_ROUNDS`]), and `scripts/crash-loop`
//! runs the same test with 20 and prints the seed (`MINDORY_CRASH_SEED`
//! replays a run).
//!
//! Each round first settles: a plain daemon finishes whatever the last crash
//! interrupted, and the library must then hold every file of the folder
//! ready exactly once, with both indexes holding exactly the stored
//! passages. Settling first is deliberate: a job the daemon dies in twice
//! before it makes progress is poison by design (`ingest::pool`), so killing
//! the same interrupted job again would end the book `failed`, which is the
//! rule working, not a loss. Then the round does one thing to the folder —
//! copies new books in, deletes one, renames a shelf (a sub-folder, so its
//! books move), or copies a book in and waits for the index save — and the
//! daemon dies in the middle of it: at a random moment (`kill -9`), or at
//! the crash point that marks the window chance rarely hits (`attempt-
//! recorded`, `mid-embedding`, `content-committed`, `mid-removal`,
//! `mid-move`, `index-save`).
//!
//! After the last round a plain restart must show every file ready once, no
//! book for a deleted file, the vector and keyword indexes equal to the
//! stored passages, and each book found by the one word only it contains.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{cli, cli_json, eventually, fixture, spawn_mindoryd, start_mindoryd};

/// The environment variable that sets the number of rounds.
const ROUNDS_ENV: &str = "MINDORY_CRASH_ROUNDS";
/// The environment variable that replays a run's random choices.
const SEED_ENV: &str = "MINDORY_CRASH_SEED";
/// Rounds when `MINDORY_CRASH_ROUNDS` is not set: one of each kind, which
/// keeps the test inside the suite's time budget.
const CI_ROUNDS: usize = 4;

/// What a round does to the watched folder before the daemon dies.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Work {
    /// Copies new books in.
    Ingest,
    /// Deletes one book's file.
    Remove,
    /// Renames a shelf (its books move).
    Rename,
    /// Copies one book in and lets the index save come.
    IndexSave,
}

/// How the daemon dies.
#[derive(Debug, Clone)]
enum Death {
    /// `kill -9` this long after the work began.
    Kill(Duration),
    /// Aborts at this crash point.
    Point(&'static str),
}

/// The watched folder and the book copies made so far.
struct Library {
    root: PathBuf,
    /// Copies made (every copy gets a new marker word).
    copies: usize,
    /// Shelves made (every new or renamed shelf gets a new name).
    shelves: usize,
}

impl Library {
    /// Every book file in the folder, sorted.
    fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.root, &mut files);
        files.sort();
        files
    }

    fn shelves(&self) -> Vec<PathBuf> {
        let mut shelves: Vec<PathBuf> = std::fs::read_dir(&self.root).unwrap().map(|e| e.unwrap().path()).collect();
        shelves.sort();
        shelves
    }

    /// Copies a fixture into a shelf (an existing one or, sometimes, a new
    /// one) with a sentence of its own, so that each copy is a distinct
    /// book that one word finds.
    fn add_copy(&mut self, rng: &mut fastrand::Rng) -> PathBuf {
        let shelves = self.shelves();
        let shelf = if shelves.is_empty() || rng.u8(0..3) == 0 {
            self.shelves += 1;
            let shelf = self.root.join(format!("shelf-{}", self.shelves));
            std::fs::create_dir_all(&shelf).unwrap();
            shelf
        } else {
            shelves[rng.usize(0..shelves.len())].clone()
        };
        self.copies += 1;
        let word = marker(self.copies);
        let sentence = format!("This copy was shelved by the keeper {word}.");
        // Mostly the two tiny fixtures; the Constitution (about 40
        // passages) now and then, so some kills land mid-embedding.
        let (name, text) = match rng.u8(0..5) {
            0 => {
                let text = std::fs::read_to_string(fixture("constitution.txt")).unwrap();
                (format!("constitution-{}.txt", self.copies), format!("{text}\n\n{sentence}\n"))
            }
            1 | 2 => {
                let text = std::fs::read_to_string(fixture("federalist-10.html")).unwrap();
                let text = text.replace("</body>", &format!("<p>{sentence}</p>\n</body>"));
                (format!("federalist-{}.html", self.copies), text)
            }
            _ => {
                let text = std::fs::read_to_string(fixture("looking-glass.md")).unwrap();
                (format!("looking-glass-{}.md", self.copies), format!("{text}\n{sentence}\n"))
            }
        };
        let path = shelf.join(name);
        // Written beside and renamed in, as a download lands: the watcher
        // never sees half a file.
        let part = self.root.join(format!(".{}.part", self.copies));
        std::fs::write(&part, text).unwrap();
        std::fs::rename(&part, &path).unwrap();
        path
    }
}

/// The word only copy `n` contains: letters between a fixed prefix and
/// suffix, so that no stemmer folds two of them into one.
fn marker(n: usize) -> String {
    let mut word = String::from("zorb");
    let mut n = n;
    loop {
        word.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    word.push_str("vex");
    word
}

/// The marker word a file's text carries.
fn marker_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let at = text.find("the keeper ").unwrap() + "the keeper ".len();
    text[at..].split('.').next().unwrap().to_string()
}

/// Waits until the library holds every file of the folder ready exactly
/// once and both indexes hold exactly the stored passages; returns the
/// books.
async fn settled(socket: &Path, lib: &Library, when: &str) -> Vec<serde_json::Value> {
    let expected: Vec<String> = lib.files().iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let books = eventually(
        &format!("{when}: every file ready once ({} files)", expected.len()),
        Duration::from_secs(300),
        || {
            let expected = expected.clone();
            async move {
                let books = cli_json(socket, &["books", "--json"]).await;
                let books = books.as_array().unwrap().clone();
                let mut paths: Vec<String> = books.iter().map(|b| b["path"].as_str().unwrap().to_string()).collect();
                paths.sort();
                (paths == expected && books.iter().all(|b| b["status"] == "ready")).then_some(books)
            }
        },
    )
    .await;
    assert!(books.iter().all(|b| b["chunks"].as_u64().unwrap() > 0), "{when}: {books:?}");
    let passages: u64 = books.iter().map(|b| b["chunks"].as_u64().unwrap()).sum();
    eventually(
        &format!("{when}: index = store ({passages} passages)"),
        Duration::from_secs(60),
        || async {
            let status = cli_json(socket, &["status", "--json"]).await;
            let agree = ["chunks", "vectors", "keyword"]
                .iter()
                .all(|key| status[*key].as_u64() == Some(passages));
            agree.then_some(())
        },
    )
    .await;
    books
}

/// Stops a daemon through the CLI and waits for it.
async fn shut_down(socket: &Path, child: &mut tokio::process::Child) {
    let out = cli(socket, &["shutdown"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("mindoryd stops within 60 s of a shutdown")
        .unwrap();
    assert!(status.success(), "a clean stop: {status}");
}

/// How often the log says a crash point was reached.
fn crash_reports(root: &Path, point: &str) -> usize {
    let log = std::fs::read_to_string(root.join("mindoryd.log")).unwrap_or_default();
    log.matches(&format!("crash point {point} reached")).count()
}

/// Does `work` to the library; returns what it did, for the round's line.
fn do_work(work: Work, lib: &mut Library, rng: &mut fastrand::Rng) -> String {
    match work {
        Work::Ingest => {
            // Three at first, so that the next rounds have books to delete
            // and shelves to rename.
            let n = if lib.files().is_empty() { 3 } else { rng.usize(1..=3) };
            let added: Vec<String> = (0..n)
                .map(|_| lib.add_copy(rng).strip_prefix(&lib.root).unwrap().display().to_string())
                .collect();
            format!("copied in {}", added.join(", "))
        }
        Work::IndexSave => {
            let added = lib.add_copy(rng);
            format!("copied in {}", added.strip_prefix(&lib.root).unwrap().display())
        }
        Work::Remove => {
            let files = lib.files();
            let gone = &files[rng.usize(0..files.len())];
            std::fs::remove_file(gone).unwrap();
            format!("deleted {}", gone.strip_prefix(&lib.root).unwrap().display())
        }
        Work::Rename => {
            let shelves: Vec<PathBuf> = lib
                .shelves()
                .into_iter()
                .filter(|s| std::fs::read_dir(s).unwrap().next().is_some())
                .collect();
            let from = &shelves[rng.usize(0..shelves.len())];
            lib.shelves += 1;
            let to = lib.root.join(format!("shelf-{}", lib.shelves));
            std::fs::rename(from, &to).unwrap();
            format!(
                "renamed {} to {}",
                from.file_name().unwrap().to_string_lossy(),
                to.file_name().unwrap().to_string_lossy()
            )
        }
    }
}

/// Rounds of work on a watched folder, each ended by a crash, lose and
/// duplicate nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_on_a_watched_folder_loses_and_duplicates_nothing() {
    let rounds: usize = std::env::var(ROUNDS_ENV).map_or(CI_ROUNDS, |r| {
        r.parse().unwrap_or_else(|_| panic!("{ROUNDS_ENV}={r} is not a number of rounds"))
    });
    let seed: u64 = std::env::var(SEED_ENV).map_or_else(
        |_| fastrand::u64(..),
        |s| s.parse().unwrap_or_else(|_| panic!("{SEED_ENV}={s} is not a seed")),
    );
    println!("crash loop: {rounds} rounds, seed {seed} (replay: {SEED_ENV}={seed} {ROUNDS_ENV}={rounds})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("library")).unwrap();
    let mut lib = Library {
        root: root.join("library").canonicalize().unwrap(),
        copies: 0,
        shelves: 0,
    };
    // The first rounds do one kind of work each (ingest first: the others
    // need books), so even the short CI run has every kind.
    let mut first = vec![Work::Remove, Work::Rename, Work::IndexSave];
    rng.shuffle(&mut first);
    first.insert(0, Work::Ingest);
    let (mut kills, mut points) = (0, 0);

    for round in 1..=rounds {
        let when = format!("round {round} (seed {seed})");
        // Settle: a plain daemon finishes what the last crash interrupted.
        let (mut child, socket) = start_mindoryd(root).await;
        if round == 1 {
            let out = cli(&socket, &["folders", "add", lib.root.to_str().unwrap()]).await;
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        settled(&socket, &lib, &format!("{when}, before its work")).await;

        let mut work = first.get(round - 1).copied().unwrap_or_else(|| {
            *rng.choice(&[Work::Ingest, Work::Ingest, Work::Remove, Work::Rename, Work::IndexSave])
                .unwrap()
        });
        // Removing or moving needs books, and the library never empties.
        if lib.files().len() < 2 && matches!(work, Work::Remove | Work::Rename) {
            work = Work::Ingest;
        }
        // The index save comes 2 s after the last change: a random kill
        // would rarely land in it, so it always dies at its crash point.
        let death = match work {
            Work::IndexSave => Death::Point("index-save"),
            _ if rng.bool() => Death::Kill(Duration::from_millis(rng.u64(0..2500))),
            Work::Ingest => Death::Point(rng.choice(&["attempt-recorded", "mid-embedding", "content-committed"]).unwrap()),
            Work::Remove => Death::Point("mid-removal"),
            Work::Rename => Death::Point("mid-move"),
        };

        let did = match &death {
            Death::Kill(after) => {
                let did = do_work(work, &mut lib, &mut rng);
                tokio::time::sleep(*after).await;
                child.kill().await.unwrap();
                let status = child.wait().await.unwrap();
                assert_eq!(status.signal(), Some(nix::sys::signal::Signal::SIGKILL as i32), "{when}: {status}");
                kills += 1;
                format!("{did}; kill -9 after {} ms", after.as_millis())
            }
            Death::Point(point) => {
                shut_down(&socket, &mut child).await;
                let before = crash_reports(root, point);
                let (mut child, socket) = spawn_mindoryd(root, &[("MINDORY_CRASH_AT", point)]);
                eventually(&format!("{when}: the armed daemon answers"), Duration::from_secs(120), || async {
                    cli(&socket, &["status"]).await.status.success().then_some(())
                })
                .await;
                let did = do_work(work, &mut lib, &mut rng);
                let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
                    .await
                    .unwrap_or_else(|_| panic!("{when}: mindoryd did not reach crash point {point} within 120 s ({did})"))
                    .unwrap();
                assert_eq!(status.signal(), Some(nix::sys::signal::Signal::SIGABRT as i32), "{when}: {status}");
                assert_eq!(crash_reports(root, point), before + 1, "{when}: the daemon died at {point}");
                points += 1;
                format!("{did}; died at crash point {point}")
            }
        };
        println!("round {round}/{rounds}: {did} ({:.1} s in)", started.elapsed().as_secs_f64());
    }

    // After the last round: a plain restart opens the database and reads
    // it, every file is one ready book, the indexes equal the store, and
    // every book's own word finds it first.
    let (mut child, socket) = start_mindoryd(root).await;
    let books = settled(&socket, &lib, &format!("after the last round (seed {seed})")).await;
    for file in lib.files() {
        let word = marker_of(&file);
        let hits = cli_json(&socket, &["search", "--json", "--mode", "keyword", "-k", "1", &word]).await;
        assert_eq!(
            hits[0]["path"].as_str(),
            file.to_str(),
            "seed {seed}: `{word}` finds {}: {hits}",
            file.display()
        );
    }
    shut_down(&socket, &mut child).await;
    let passages: u64 = books.iter().map(|b| b["chunks"].as_u64().unwrap()).sum();
    println!(
        "crash loop: {rounds} rounds ({kills} kill -9, {points} crash points), seed {seed}, {} books, {passages} passages, {:.1} s: every file ready once, index = store, every book found by its word",
        books.len(),
        started.elapsed().as_secs_f64()
    );
}
