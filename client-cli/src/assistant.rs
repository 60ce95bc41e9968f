//! The assistant commands: `ask`, `chat`, `summarize`, `explain` and `llm`.
//! Answers stream: text is printed as it arrives, then the sources.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use mindory_proto::pb::{self, assistant_client::AssistantClient};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::json;
use crate::layout::wrap;

/// How one streamed answer ended, for the caller (chat keeps the id).
struct Finished {
    conversation_id: String,
}

/// Prints a stream of answer events: as text for people, or one JSON
/// object per line with `--json`.
async fn follow(mut stream: tonic::Streaming<pb::AskEvent>, as_json: bool) -> Result<Finished> {
    let mut out = std::io::stdout().lock();
    let mut finished = Finished {
        conversation_id: String::new(),
    };
    let mut progress_shown = false;
    while let Some(event) = stream.next().await {
        let event = event.context("the answer failed")?;
        let Some(kind) = event.kind else { continue };
        if as_json {
            writeln!(out, "{}", json::ask_event(&kind))?;
            out.flush()?;
        }
        match kind {
            pb::ask_event::Kind::Context(c) => finished.conversation_id = c.conversation_id,
            pb::ask_event::Kind::Progress(p) if !as_json => {
                eprint!("\r{} {}/{} parts…", p.stage, p.done, p.total);
                progress_shown = true;
            }
            pb::ask_event::Kind::Token(t) if !as_json => {
                if progress_shown {
                    eprintln!();
                    progress_shown = false;
                }
                write!(out, "{}", t.text)?;
                out.flush()?;
            }
            pb::ask_event::Kind::Done(d) => {
                finished.conversation_id = d.conversation_id.clone();
                if !as_json {
                    print_sources(&mut out, &d)?;
                }
            }
            _ => {}
        }
    }
    Ok(finished)
}

fn print_sources(out: &mut impl Write, d: &pb::AskDone) -> Result<()> {
    writeln!(out)?;
    if d.nothing_relevant {
        return Ok(());
    }
    let cited: Vec<&pb::Source> = d.sources.iter().filter(|s| s.cited).collect();
    let uncited: Vec<&pb::Source> = d.sources.iter().filter(|s| !s.cited).collect();
    let line = |out: &mut dyn Write, s: &pb::Source| -> std::io::Result<()> {
        let loc = s.location.clone().unwrap_or_default();
        writeln!(
            out,
            "  [{}] {}  (#{} chars {}–{})",
            s.number,
            mindory_proto::cite::place(&s.title, &loc.chapter, &loc.page_label),
            s.book_id,
            loc.start,
            loc.end
        )
    };
    if !cited.is_empty() {
        writeln!(out, "\nSources:")?;
        for s in cited {
            line(out, s)?;
        }
    }
    if !uncited.is_empty() {
        writeln!(out, "\nAlso given to the model, not cited:")?;
        for s in uncited {
            line(out, s)?;
        }
    }
    if !d.invalid_citations.is_empty() {
        let list: Vec<String> = d.invalid_citations.iter().map(|n| format!("[{n}]")).collect();
        writeln!(
            out,
            "\nwarning: the answer cites {}, which no passage had; do not trust those claims",
            list.join(", ")
        )?;
    }
    print_claims(out, d)?;
    if let Some(t) = &d.timings {
        eprintln!(
            "({} {} · retrieval {} ms · first token {} ms · {:.1} tokens/s · {} prompt + {} answer tokens)",
            d.backend, d.model, t.retrieval_ms, t.first_token_ms, t.tokens_per_second, d.prompt_tokens, d.completion_tokens
        );
    }
    Ok(())
}

/// What the sentence check found: counts per status, then each sentence
/// that is not verified, with what backs it (or that nothing does).
fn print_claims(out: &mut impl Write, d: &pb::AskDone) -> Result<()> {
    if d.claims.is_empty() {
        return Ok(());
    }
    let count = |s: &str| d.claims.iter().filter(|c| c.status == s).count();
    writeln!(
        out,
        "\nChecked against the passages: {} verified, {} inferred, {} wrong citation, {} not found in your books",
        count("verified"),
        count("inferred"),
        count("wrong"),
        count("unsupported")
    )?;
    let numbers = |v: &[u32]| v.iter().map(|n| format!("[{n}]")).collect::<Vec<_>>().join(" ");
    for c in d.claims.iter().filter(|c| c.status != "verified") {
        let text: String = d
            .answer
            .chars()
            .skip(c.start as usize)
            .take(c.end.saturating_sub(c.start) as usize)
            .collect();
        let text = if text.chars().count() > 90 {
            format!("{}…", text.chars().take(89).collect::<String>())
        } else {
            text
        };
        let why = match c.status.as_str() {
            "inferred" => format!("inferred {}", numbers(&c.supporting[..1.min(c.supporting.len())])),
            "wrong" if c.supporting.is_empty() => format!("cites {}, which does not support it; nothing does", numbers(&c.cited)),
            "wrong" => format!("cites {}, supported by {}", numbers(&c.cited), numbers(&c.supporting[..1])),
            _ => "not found in your books".to_string(),
        };
        writeln!(out, "  {why}: \"{text}\"")?;
    }
    if !d.grounded {
        writeln!(
            out,
            "\nwarning: nothing in the passages supports this answer; it may come from the model's memory, not your books"
        )?;
    }
    Ok(())
}

/// `mindory ask`.
pub async fn ask(channel: Channel, question: String, books: Vec<u64>, k: u32, conversation: String, as_json: bool) -> Result<ExitCode> {
    let stream = AssistantClient::new(channel)
        .ask(pb::AskRequest {
            question,
            book_ids: books,
            conversation_id: conversation,
            k,
        })
        .await?
        .into_inner();
    follow(stream, as_json).await?;
    Ok(ExitCode::SUCCESS)
}

/// `mindory chat`: a question per line; follow-ups see earlier turns.
pub async fn chat(channel: Channel, books: Vec<u64>) -> Result<ExitCode> {
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("Ask about your books. Follow-up questions see earlier answers. /new starts over, /quit or Ctrl-D leaves.");
    }
    let mut client = AssistantClient::new(channel);
    let mut conversation = String::new();
    let stdin = std::io::stdin();
    loop {
        if interactive {
            eprint!("\n> ");
            std::io::stderr().flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let question = line.trim();
        match question {
            "" => continue,
            "/quit" | "/exit" => break,
            "/new" => {
                conversation.clear();
                eprintln!("(new conversation)");
                continue;
            }
            _ => {}
        }
        let stream = client
            .ask(pb::AskRequest {
                question: question.to_string(),
                book_ids: books.clone(),
                conversation_id: conversation.clone(),
                k: 0,
            })
            .await?
            .into_inner();
        match follow(stream, false).await {
            Ok(f) => conversation = f.conversation_id,
            // One failed answer does not end the session.
            Err(e) => eprintln!("mindory: {e:#}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `mindory summarize`.
pub async fn summarize(channel: Channel, book_id: u64, chapter: u32, as_json: bool) -> Result<ExitCode> {
    let stream = AssistantClient::new(channel)
        .summarize(pb::SummarizeRequest { book_id, chapter })
        .await?
        .into_inner();
    follow(stream, as_json).await?;
    Ok(ExitCode::SUCCESS)
}

/// `mindory explain`.
pub async fn explain(channel: Channel, book_id: u64, at: u64, chars: u32, as_json: bool) -> Result<ExitCode> {
    let stream = AssistantClient::new(channel)
        .explain(pb::ExplainRequest {
            book_id,
            at,
            chars,
            conversation_id: String::new(),
        })
        .await?
        .into_inner();
    follow(stream, as_json).await?;
    Ok(ExitCode::SUCCESS)
}

/// `mindory llm`.
pub async fn llm(channel: Channel, as_json: bool) -> Result<ExitCode> {
    let i = AssistantClient::new(channel).llm_info(pb::LlmInfoRequest {}).await?.into_inner();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json::llm(&i))?);
        return Ok(if i.ready { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "backend:  {}", i.backend)?;
    if !i.model.is_empty() {
        writeln!(out, "model:    {}", i.model)?;
    }
    if !i.base_url.is_empty() {
        writeln!(out, "endpoint: {}", i.base_url)?;
    }
    if i.context_tokens > 0 {
        writeln!(
            out,
            "context:  {} tokens (answers up to {}, temperature {})",
            i.context_tokens, i.max_tokens, i.temperature
        )?;
    }
    writeln!(out, "ready:    {}", if i.ready { "yes" } else { "no" })?;
    for (n, line) in wrap(&i.detail, 90).into_iter().enumerate() {
        writeln!(out, "{}{line}", if n == 0 { "detail:   " } else { "          " })?;
    }
    writeln!(out, "config:   {}", i.config_path)?;
    Ok(if i.ready { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
