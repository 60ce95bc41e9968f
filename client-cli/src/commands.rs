//! One function per command: connect, call, print.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use mindory_proto::pb::{
    self, daemon_client::DaemonClient, events_client::EventsClient, library_client::LibraryClient, search_client::SearchClient,
};
use mindory_proto::{models, path_text, paths, PROTOCOL_VERSION};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::layout::wrap;
use crate::{json, Cli, Command, FoldersAction, ModelsAction};

/// Runs the parsed command; the exit code is 0 or 1.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let socket = cli.socket.clone().unwrap_or_else(paths::default_socket_path);
    match cli.command {
        Command::Models {
            action: ModelsAction::List { json },
        } => models_list(connect(&socket).await?, json).await,
        Command::Models {
            action: ModelsAction::Use { name, wait },
        } => models_use(connect(&socket).await?, name, wait).await,
        Command::Models { action } => models_cmd(action),
        Command::Service { action } => crate::desktop::service(action, cli.socket.as_deref(), &socket).await,
        Command::Completions { shell } => crate::desktop::completions(shell),
        Command::Man { out } => crate::desktop::man(out.as_deref()),
        Command::Doctor {
            models_dir,
            data_dir,
            config,
            json,
        } => crate::doctor::run(&socket, models_dir, data_dir, config, json).await,
        command => {
            let channel = connect(&socket).await?;
            match command {
                Command::Status { json } => status(channel, json).await,
                Command::Add { paths, wait } => add(channel, paths, wait).await,
                Command::Books { json, failed } => books(channel, json, failed).await,
                Command::Book { id } => book(channel, id).await,
                Command::Rm { id } => rm(channel, id).await,
                Command::Read {
                    id,
                    chapter,
                    page,
                    at,
                    chars,
                } => read(channel, id, chapter, page, at, chars).await,
                Command::Reindex { ids } => reindex(channel, ids).await,
                Command::Search {
                    query,
                    k,
                    books,
                    mode,
                    scores,
                    json,
                } => search(channel, query.join(" "), k, books, mode, scores, json).await,
                Command::Events { json } => events(channel, json).await,
                Command::Folders { action } => folders(channel, action).await,
                Command::Ask {
                    question,
                    books,
                    k,
                    conversation,
                    json,
                } => crate::assistant::ask(channel, question.join(" "), books, k, conversation, json).await,
                Command::Chat { books } => crate::assistant::chat(channel, books).await,
                Command::Summarize { id, chapter, json } => crate::assistant::summarize(channel, id, chapter, json).await,
                Command::Explain { id, at, chars, json } => crate::assistant::explain(channel, id, at, chars, json).await,
                Command::Llm { json } => crate::assistant::llm(channel, json).await,
                Command::Shutdown => shutdown(channel).await,
                Command::Models { .. }
                | Command::Service { .. }
                | Command::Completions { .. }
                | Command::Man { .. }
                | Command::Doctor { .. } => unreachable!("handled above"),
            }
        }
    }
}

/// Connects and checks the protocol version (a mismatch is a warning: most
/// calls still work, and the user learns which side to upgrade).
pub(crate) async fn connect(socket: &std::path::Path) -> Result<Channel> {
    let channel = mindory_proto::connect(socket).await?;
    let hello = DaemonClient::new(channel.clone())
        .hello(pb::HelloRequest {
            client_protocol_version: PROTOCOL_VERSION,
            client_name: "mindory-cli".into(),
        })
        .await
        .context("the daemon did not answer Hello")?
        .into_inner();
    if hello.protocol_version != PROTOCOL_VERSION {
        eprintln!(
            "mindory: warning: the daemon speaks protocol {} (version {}), this client speaks {}; upgrade the older one",
            hello.protocol_version, hello.daemon_version, PROTOCOL_VERSION
        );
    }
    Ok(channel)
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

async fn status(channel: Channel, as_json: bool) -> Result<ExitCode> {
    let s = DaemonClient::new(channel).status(pb::StatusRequest {}).await?.into_inner();
    if as_json {
        print_json(&json::status(&s))?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "mindoryd {} (protocol {})", s.daemon_version, s.protocol_version)?;
        writeln!(out, "model      {}", s.embedding_model)?;
        if let Some(swap) = &s.swap {
            writeln!(
                out,
                "swapping   to {}: {}/{} passages re-embedded (searches use the model above until then)",
                swap.model, swap.done, swap.total
            )?;
        }
        writeln!(out, "books      {}", s.books)?;
        writeln!(
            out,
            "passages   {} ({} vectors indexed, {} keyword indexed)",
            s.chunks, s.vectors_indexed, s.keyword_indexed
        )?;
        writeln!(out, "queue      {} pending, {} running", s.queue_pending, s.queue_running)?;
        writeln!(out, "embedded   {} since start", s.embedded_since_start)?;
        writeln!(out, "data       {}", s.data_dir)?;
        if !s.storage_fault.is_empty() {
            writeln!(out, "storage    FAULT: {}", s.storage_fault)?;
        }
        for f in &s.folders {
            writeln!(out, "folder     {}", folder_line(f))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// "PATH (events)" or "PATH (polling: why)".
fn folder_line(f: &pb::Folder) -> String {
    if f.mode_reason.is_empty() {
        format!("{} ({})", show(&f.path), f.mode)
    } else {
        format!("{} ({}: {})", show(&f.path), f.mode, f.mode_reason)
    }
}

async fn folders(channel: Channel, action: FoldersAction) -> Result<ExitCode> {
    let mut library = LibraryClient::new(channel.clone());
    match action {
        FoldersAction::Add { path, wait } => {
            // Subscribe first so no event of the scan's books is missed.
            let mut stream = subscribe_if(&channel, wait).await?;
            let path = path_text::encode(&std::path::absolute(&path).unwrap_or(path));
            let r = library.add_folder(pb::AddFolderRequest { path }).await?.into_inner();
            let scan = r.scan.unwrap_or_default();
            if let Some(f) = &r.folder {
                println!("folder     {}", folder_line(f));
            }
            println!(
                "scanned    {} files in {} ms: {} queued, {} unchanged, {} moved, {} removed",
                scan.files, scan.took_ms, scan.queued, scan.unchanged, scan.moved, scan.removed
            );
            if scan.unsettled > 0 {
                println!(
                    "           {} still being written; they are ingested once they settle",
                    scan.unsettled
                );
            }
            let failed = match stream.as_mut() {
                Some(stream) if !scan.queued_ids.is_empty() => {
                    let books = all_books(library.clone()).await?;
                    let pending = scan
                        .queued_ids
                        .iter()
                        .map(|id| (*id, books.iter().find(|b| b.id == *id).map(|b| b.path.clone()).unwrap_or_default()))
                        .collect();
                    follow(stream, library, pending).await?
                }
                _ => false,
            };
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        FoldersAction::Rm { path } => {
            let path = path_text::encode(&std::path::absolute(&path).unwrap_or(path));
            let r = library
                .remove_folder(pb::RemoveFolderRequest { path: path.clone() })
                .await?
                .into_inner();
            println!("removed    {} and {} of its books", show(&path), r.books_removed);
            Ok(ExitCode::SUCCESS)
        }
        FoldersAction::Ls { json: as_json } => {
            let folders = library.list_folders(pb::ListFoldersRequest {}).await?.into_inner().folders;
            if as_json {
                print_json(&serde_json::Value::Array(folders.iter().map(json::folder).collect()))?;
            } else if folders.is_empty() {
                println!("no library folders; add one with `mindory folders add PATH`");
            } else {
                for f in &folders {
                    println!("{}", folder_line(f));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The daemon's event stream when the command will wait on it, opened
/// before the command acts so that none of its events is missed.
async fn subscribe_if(channel: &Channel, wait: bool) -> Result<Option<tonic::Streaming<pb::Event>>> {
    if !wait {
        return Ok(None);
    }
    Ok(Some(
        EventsClient::new(channel.clone())
            .subscribe(pb::SubscribeRequest {})
            .await?
            .into_inner(),
    ))
}

async fn add(channel: Channel, paths: Vec<PathBuf>, wait: bool) -> Result<ExitCode> {
    // Subscribe before adding so no event of ours is missed.
    let mut stream = subscribe_if(&channel, wait).await?;
    let abs: Vec<String> = paths
        .iter()
        .map(|p| path_text::encode(&std::path::absolute(p).unwrap_or_else(|_| p.clone())))
        .collect();
    let mut library = LibraryClient::new(channel);
    let results = library.add_paths(pb::AddPathsRequest { paths: abs }).await?.into_inner().results;
    let mut failed = false;
    let mut pending: BTreeMap<u64, String> = BTreeMap::new();
    for r in &results {
        match pb::AddOutcome::try_from(r.outcome).unwrap_or(pb::AddOutcome::Unspecified) {
            pb::AddOutcome::Queued => {
                if !wait {
                    println!("queued     #{} {}", r.book_id, show(&r.path));
                }
                pending.insert(r.book_id, r.path.clone());
            }
            pb::AddOutcome::Unchanged => println!("unchanged  #{} {}", r.book_id, show(&r.path)),
            _ => {
                failed = true;
                eprintln!("rejected   {}: {}", show(&r.path), r.reason);
            }
        }
    }
    if let Some(stream) = stream.as_mut() {
        failed |= follow(stream, library, pending).await?;
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Follows queued books until each is ready or failed, with a progress bar
/// per book and one overall (on a terminal) or a line per book. Returns
/// whether any failed.
async fn follow(
    stream: &mut tonic::Streaming<pb::Event>,
    library: LibraryClient<Channel>,
    mut pending: BTreeMap<u64, String>,
) -> Result<bool> {
    let mut failed = false;
    let tty = std::io::stderr().is_terminal();
    let bars = MultiProgress::new();
    let total_bar = if tty && pending.len() > 1 {
        let bar = bars.add(ProgressBar::new(pending.len() as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} books")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_prefix("overall");
        Some(bar)
    } else {
        None
    };
    let mut per_book: BTreeMap<u64, ProgressBar> = BTreeMap::new();
    let library_poll = library.clone();
    while !pending.is_empty() {
        let Some(event) = stream.next().await else {
            bail!("the daemon closed the event stream (shutting down?)")
        };
        let event = event?;
        use pb::event::Kind;
        match event.kind {
            Some(Kind::Progress(p)) if pending.contains_key(&p.book_id) && tty => {
                let bar = per_book.entry(p.book_id).or_insert_with(|| {
                    let bar = bars.add(ProgressBar::new(p.total));
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} passages {msg}")
                            .expect("static template")
                            .progress_chars("=> "),
                    );
                    bar.set_prefix(format!("#{}", p.book_id));
                    bar.set_message(file_name(&pending[&p.book_id]));
                    bar
                });
                bar.set_length(p.total);
                bar.set_position(p.done);
            }
            Some(Kind::Searchable(s)) if pending.contains_key(&s.book_id) => {
                // Say it once per book: its words can be searched while
                // its passages are embedded.
                let line = format!(
                    "searchable #{} {} ({} passages, by keyword while embedding)",
                    s.book_id, s.title, s.chunks
                );
                bars.suspend(|| println!("{line}"));
            }
            Some(Kind::Ready(r)) if pending.contains_key(&r.book_id) => {
                let path = pending.remove(&r.book_id).unwrap_or_default();
                if let Some(bar) = per_book.remove(&r.book_id) {
                    bar.finish_and_clear();
                }
                total_bar.iter().for_each(|b| b.inc(1));
                bars.suspend(|| {
                    println!(
                        "ready      #{} {} ({} passages, {} embedded) {}",
                        r.book_id, r.title, r.chunks, r.embedded, path
                    )
                });
            }
            Some(Kind::Failed(f)) if pending.contains_key(&f.book_id) => {
                pending.remove(&f.book_id);
                if let Some(bar) = per_book.remove(&f.book_id) {
                    bar.finish_and_clear();
                }
                total_bar.iter().for_each(|b| b.inc(1));
                failed = true;
                bars.suspend(|| eprintln!("failed     #{} {}: {}", f.book_id, show(&f.path), f.reason));
            }
            Some(Kind::Removed(r)) if pending.contains_key(&r.book_id) => {
                pending.remove(&r.book_id);
                failed = true;
                bars.suspend(|| eprintln!("removed    #{} while it was being added", r.book_id));
            }
            Some(Kind::Lagged(_)) => {
                // Events were dropped: ask the library for the truth.
                let books = all_books(library_poll.clone()).await?;
                for b in books {
                    if pending.contains_key(&b.id) && matches!(json::book_status(b.status), "ready" | "failed") {
                        pending.remove(&b.id);
                        if b.status == pb::BookStatus::Failed as i32 {
                            failed = true;
                            eprintln!("failed     #{} {}: {}", b.id, show(&b.path), b.error);
                        } else {
                            println!("ready      #{} {} ({} passages)", b.id, b.title, b.chunks);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    total_bar.iter().for_each(|b| b.finish_and_clear());
    Ok(failed)
}

fn file_name(path: &str) -> String {
    path_text::decode(path)
        .file_name()
        .map_or_else(|| show(path), |n| n.to_string_lossy().into_owned())
}

/// A path from the daemon, for people (see `mindory_proto::path_text`).
fn show(path: &str) -> String {
    path_text::display(path)
}

/// Every book, in id order, asked for a page at a time
/// ([`mindory_proto::books_page_size`], which tests set small).
async fn all_books(mut library: LibraryClient<Channel>) -> Result<Vec<pb::Book>> {
    let mut books = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = library
            .list_books(pb::ListBooksRequest {
                page_size: mindory_proto::books_page_size(),
                page_token,
            })
            .await?
            .into_inner();
        books.extend(page.books);
        if page.next_page_token.is_empty() {
            return Ok(books);
        }
        page_token = page.next_page_token;
    }
}

async fn books(channel: Channel, as_json: bool, only_failed: bool) -> Result<ExitCode> {
    let books = all_books(LibraryClient::new(channel)).await?;
    let books: Vec<_> = books
        .into_iter()
        .filter(|b| !only_failed || b.status == pb::BookStatus::Failed as i32)
        .collect();
    if as_json {
        print_json(&serde_json::Value::Array(books.iter().map(json::book).collect()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    if books.is_empty() {
        writeln!(
            out,
            "{}",
            if only_failed {
                "no failed books"
            } else {
                "no books yet; add some with `mindory add PATH`"
            }
        )?;
    }
    for b in &books {
        let author = if b.author.is_empty() {
            String::new()
        } else {
            format!(" — {}", b.author)
        };
        // A book that failed before its format was known shows none,
        // rather than empty brackets.
        let format = if b.format.is_empty() {
            String::new()
        } else {
            format!("  [{}]", b.format)
        };
        writeln!(
            out,
            "#{:<4} {:<8} {:>6} passages  {}{}{}",
            b.id,
            json::book_status(b.status),
            b.chunks,
            b.title,
            author,
            format
        )?;
        if !b.error.is_empty() {
            writeln!(out, "       {}: {}", show(&b.path), b.error)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn book(channel: Channel, id: u64) -> Result<ExitCode> {
    let b = LibraryClient::new(channel).get_book(pb::GetBookRequest { id }).await?.into_inner();
    let mut out = std::io::stdout().lock();
    writeln!(out, "#{} {}", b.id, b.title)?;
    if !b.author.is_empty() {
        writeln!(out, "author   {}", b.author)?;
    }
    if !b.language.is_empty() {
        writeln!(out, "language {}", b.language)?;
    }
    writeln!(out, "path     {}", show(&b.path))?;
    writeln!(out, "format   {}", b.format)?;
    writeln!(
        out,
        "status   {}{}",
        json::book_status(b.status),
        if b.error.is_empty() {
            String::new()
        } else {
            format!(": {}", b.error)
        }
    )?;
    writeln!(out, "passages {} over {} characters", b.chunks, b.text_chars)?;
    if !b.passage_kinds.is_empty() {
        let mut kinds: Vec<(&String, &u64)> = b.passage_kinds.iter().collect();
        kinds.sort();
        let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        writeln!(out, "not prose {} (searched, ranked after the prose)", list.join(", "))?;
    }
    if !b.sections.is_empty() {
        writeln!(out, "contents")?;
        for (i, s) in b.sections.iter().enumerate() {
            let heading = if s.heading.is_empty() {
                "(before the first heading)"
            } else {
                &s.heading
            };
            writeln!(out, "  {:>3}. {:<60} {:>5} passages  @{}", i + 1, heading, s.chunks, s.start)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn read(channel: Channel, id: u64, chapter: Option<u32>, page: Option<String>, at: Option<u64>, chars: u32) -> Result<ExitCode> {
    use pb::get_passage_request::At;
    let location = match (chapter, page, at) {
        (Some(c), _, _) => At::Chapter(c),
        (_, Some(p), _) => At::PageLabel(p),
        (_, _, Some(o)) => At::Offset(o),
        _ => At::Chapter(1),
    };
    let p = LibraryClient::new(channel)
        .get_passage(pb::GetPassageRequest {
            book_id: id,
            at: Some(location),
            max_chars: chars,
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    let place = mindory_proto::cite::place(&p.title, &p.chapter, &p.page_label);
    writeln!(out, "{place}  (chars {}–{} of {})", p.start, p.end, p.text_chars)?;
    writeln!(out)?;
    for paragraph in p.text.split("\n\n") {
        for line in wrap(paragraph, 96) {
            writeln!(out, "{line}")?;
        }
        writeln!(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn rm(channel: Channel, id: u64) -> Result<ExitCode> {
    let r = LibraryClient::new(channel)
        .remove_book(pb::RemoveBookRequest { id })
        .await?
        .into_inner();
    println!("removed #{id} ({} passages)", r.chunks_removed);
    Ok(ExitCode::SUCCESS)
}

async fn reindex(channel: Channel, ids: Vec<u64>) -> Result<ExitCode> {
    let r = LibraryClient::new(channel)
        .reindex(pb::ReindexRequest { book_ids: ids })
        .await?
        .into_inner();
    println!("queued {} book(s) for reindexing", r.queued.len());
    Ok(ExitCode::SUCCESS)
}

async fn search(
    channel: Channel,
    query: String,
    k: u32,
    books: Vec<u64>,
    mode: crate::SearchMode,
    scores: bool,
    as_json: bool,
) -> Result<ExitCode> {
    let mode = match mode {
        crate::SearchMode::Hybrid => pb::SearchMode::Hybrid,
        crate::SearchMode::Vector => pb::SearchMode::Vector,
        crate::SearchMode::Keyword => pb::SearchMode::Keyword,
    };
    let r = SearchClient::new(channel)
        .search(pb::SearchRequest {
            query,
            k,
            book_ids: books,
            mode: mode as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    if as_json {
        print_json(&serde_json::Value::Array(
            r.hits.iter().enumerate().map(|(i, h)| json::hit(i + 1, h)).collect(),
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    if r.hits.is_empty() {
        writeln!(out, "no passages found; is anything indexed yet? (`mindory books`)")?;
    }
    for (i, h) in r.hits.iter().enumerate() {
        let loc = h.location.clone().unwrap_or_default();
        let place = mindory_proto::cite::place(&h.title, &loc.chapter, &loc.page_label);
        writeln!(
            out,
            "{}. {}  (score {:.3}, #{} chars {}–{})",
            i + 1,
            place,
            h.score,
            h.book_id,
            loc.start,
            loc.end
        )?;
        if scores {
            let line: Vec<String> = h
                .retrievers
                .iter()
                .map(|r| match r.rank {
                    0 => format!("{} {:.3}", r.retriever, r.score),
                    rank => format!("{} #{rank} {:.3}", r.retriever, r.score),
                })
                .collect();
            writeln!(out, "   [{}]", line.join(" · "))?;
        }
        for line in wrap(&h.text, 96) {
            writeln!(out, "   {line}")?;
        }
        writeln!(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn events(channel: Channel, as_json: bool) -> Result<ExitCode> {
    let mut stream = EventsClient::new(channel).subscribe(pb::SubscribeRequest {}).await?.into_inner();
    let mut out = std::io::stdout();
    while let Some(event) = stream.next().await {
        let event = event?;
        let v = json::event(&event);
        if as_json {
            writeln!(out, "{}", serde_json::to_string(&v)?)?;
        } else {
            let kind = v["type"].as_str().unwrap_or("?").to_string();
            let mut fields: Vec<String> = v
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !matches!(k.as_str(), "type" | "seq" | "at_ms"))
                .map(|(k, val)| format!("{k}={}", val.as_str().map_or_else(|| val.to_string(), str::to_string)))
                .collect();
            fields.sort();
            writeln!(out, "#{:<6} {:<9} {}", event.seq, kind, fields.join(" "))?;
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown(channel: Channel) -> Result<ExitCode> {
    DaemonClient::new(channel).shutdown(pb::ShutdownRequest {}).await?;
    println!("the daemon is shutting down");
    Ok(ExitCode::SUCCESS)
}

fn models_dir_or_default(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(paths::default_models_dir)
}

async fn models_list(channel: Channel, as_json: bool) -> Result<ExitCode> {
    let mut daemon = DaemonClient::new(channel);
    let models = daemon.list_models(pb::ListModelsRequest {}).await?.into_inner().models;
    let swap = daemon.status(pb::StatusRequest {}).await?.into_inner().swap;
    if as_json {
        let v: Vec<serde_json::Value> = models.iter().map(json::embedding_model).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    for m in &models {
        let state = if m.active {
            "active".to_string()
        } else if m.swapping_in {
            match &swap {
                Some(s) => format!("swapping in {}/{}", s.done, s.total),
                None => "swapping in".to_string(),
            }
        } else if m.installed {
            "installed".to_string()
        } else {
            "not installed (`mindory models fetch`)".to_string()
        };
        // A remote model's length is known once it has been loaded.
        let dimensions = if m.dimensions == 0 {
            "?".to_string()
        } else {
            m.dimensions.to_string()
        };
        println!("{:<18} {:>4}-d  {:<40} {}", m.name, dimensions, m.id, state);
    }
    Ok(ExitCode::SUCCESS)
}

async fn models_use(channel: Channel, name: String, wait: bool) -> Result<ExitCode> {
    // Subscribe first so that no progress is missed.
    let mut events = subscribe_if(&channel, wait).await?;
    let mut daemon = DaemonClient::new(channel);
    let response = daemon.use_model(pb::UseModelRequest { name: name.clone() }).await?.into_inner();
    let outcome = pb::UseModelOutcome::try_from(response.outcome).unwrap_or(pb::UseModelOutcome::Unspecified);
    match outcome {
        pb::UseModelOutcome::AlreadyActive => {
            println!("{} is already the active model", response.model);
            return Ok(ExitCode::SUCCESS);
        }
        pb::UseModelOutcome::Cancelled => {
            println!("{} is the active model; the swap in progress was cancelled", response.model);
            return Ok(ExitCode::SUCCESS);
        }
        pb::UseModelOutcome::Started => println!("re-embedding the library with {}; searches keep working meanwhile", response.model),
        pb::UseModelOutcome::InProgress => println!("a swap to {} is already running", response.model),
        pb::UseModelOutcome::Unspecified => bail!("the daemon answered with an unknown outcome; update mindory"),
    }
    let Some(events) = events.as_mut() else {
        println!("`mindory status` shows its progress; `mindory models use <active model>` cancels it");
        return Ok(ExitCode::SUCCESS);
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        ProgressBar::new(0).with_style(ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} passages").expect("static template"))
    });
    while let Some(event) = events.next().await {
        use pb::event::Kind;
        match event?.kind {
            Some(Kind::SwapProgress(p)) if p.model == response.model => {
                if let Some(bar) = &bar {
                    bar.set_message(name.clone());
                    bar.set_length(p.total);
                    bar.set_position(p.done);
                }
            }
            Some(Kind::SwapFinished(f)) if f.to == response.model => {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                println!("searches use {} now (was {})", f.to, f.from);
                return Ok(ExitCode::SUCCESS);
            }
            Some(Kind::SwapCancelled(c)) if c.model == response.model => {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                eprintln!("mindory: the swap to {} was cancelled: {}", c.model, c.reason);
                return Ok(ExitCode::FAILURE);
            }
            Some(Kind::Lagged(_)) => {
                // The end may be among the dropped events: ask.
                let s = daemon.status(pb::StatusRequest {}).await?.into_inner();
                if s.swap.is_none() {
                    if let Some(bar) = &bar {
                        bar.finish_and_clear();
                    }
                    if s.embedding_model == response.model {
                        println!("searches use {} now", s.embedding_model);
                        return Ok(ExitCode::SUCCESS);
                    }
                    eprintln!(
                        "mindory: the swap to {} ended without switching; `mindory events` may say why",
                        response.model
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
            _ => {}
        }
    }
    bail!("the daemon closed the event stream (shutting down?); the swap resumes when it starts again")
}

fn models_cmd(action: ModelsAction) -> Result<ExitCode> {
    match action {
        ModelsAction::Fetch {
            models_dir,
            python,
            no_llm,
            llm,
        } => {
            let dir = models_dir_or_default(models_dir);
            let llm = match llm.as_deref() {
                None => &models::DEFAULT_LLM,
                Some(name) => models::llm_model(name)
                    .with_context(|| format!("no local answer model is called {name:?}; the models are {}", models::llm_names()))?,
            };
            let mut report = models::fetch(&dir, &python, &mut |line| eprintln!("{line}"))
                .with_context(|| format!("fetching models into {}", dir.display()))?;
            if !no_llm
                && models::fetch_llm(&dir, llm, &python, &mut |line| eprintln!("{line}"))
                    .with_context(|| format!("fetching the local answer model {} into {}", llm.name, dir.display()))?
            {
                report.installed.push(dir.join(llm.file.dest));
            }
            if report.installed.is_empty() {
                println!("models already present in {}", dir.display());
            } else {
                println!("installed {} file(s) into {}", report.installed.len(), dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsAction::List { .. } | ModelsAction::Use { .. } => bail!("`models list` and `models use` talk to the daemon"),
        ModelsAction::Path { models_dir } => {
            let dir = models_dir_or_default(models_dir);
            println!("{}", dir.display());
            match models::verify_present(&dir) {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("mindory: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
