//! The local engine's prompts against llama.cpp's on the same GGUF files:
//! messages must render to the same text through the chat template, and
//! text must become the same token ids, for the default answer model
//! (byte-level BPE, a ChatML Jinja template) and Gemma 3 270M
//! (SentencePiece, no template). llama.cpp's server exposes both steps
//! (`/apply-template`, `/tokenize`), so the reference is the real thing.

use std::path::Path;

use mindory_daemon::llm::local::PromptFormat;
use mindory_daemon::llm::{ChatMessage, Role};
use serde_json::json;

use crate::support::{self, LlamaServer};

/// Text that exercises the pre-tokenizer and the merges: prose, verse-like
/// line breaks, runs of spaces and tabs, code, numbers, accents, several
/// scripts, emoji, contractions.
const TEXTS: &[&str] = &[
    "How old must a senator be, and for how long a citizen?",
    "No Person shall be a Senator who shall not have attained to the Age of thirty Years,\nand been nine Years a Citizen of the United States. [1]",
    "参议员必须年满多少岁？他们必须做美国公民多少年？",
    "  leading spaces,\ttabs\n\n\nand   runs of   spaces  \n",
    "fn main() { println!(\"{}\", 1_000_000 + 42); } // x<=y && y!=z",
    "Numbers 1234567890 and 3.14159, dates 1787-09-17, ½ ² and €5.",
    "Café naïve coöperate — “quotes” ‘single’ … Ελληνικά Русский 日本語のテキスト 한국어",
    "emoji 🙂👍🏽 and symbols ©®™ in docs/a_b.txt?x=1#y",
    "I'm sure they'll say it's what we've done, isn't it? DON'T SHOUT",
];

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v["tokens"]
        .as_array()
        .unwrap_or_else(|| panic!("no tokens in {v}"))
        .iter()
        .map(|t| t.as_u64().expect("a token id") as u32)
        .collect()
}

/// Plain text (no special tokens, no BOS) tokenizes alike.
async fn same_text_tokens(server: &LlamaServer, tok: &mindory_daemon::llm::local::GgufTokenizer, model: &str) {
    for text in TEXTS {
        let theirs = ids(&server
            .post("/tokenize", &json!({"content": text, "add_special": false, "parse_special": false}))
            .await);
        assert_eq!(tok.encode(text), theirs, "{model}: token ids of {text:?}");
    }
}

async fn start(dir: &Path, gguf: &Path, template: &str) -> LlamaServer {
    LlamaServer::start(&dir.join("llama-server.log"), gguf, template).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_template_and_token_ids_match_llama_cpp() {
    let tmp = tempfile::tempdir().unwrap();

    // The default answer model: its Jinja template and byte-level BPE.
    let gguf = support::models_dir().join(mindory_proto::models::DEFAULT_LLM.file.dest);
    let (tok, format) = PromptFormat::from_file(&gguf).expect("read the GGUF's tokenizer and template");
    assert!(
        matches!(format, PromptFormat::Template(_)),
        "an instruct model carries a chat template"
    );
    let server = start(tmp.path(), &gguf, "").await;
    same_text_tokens(&server, &tok, "qwen").await;
    let passages = format!("Passages:\n\n[1] Constitution — Article I\n{}\n\nQuestion: {}", TEXTS[1], TEXTS[0]);
    let conversations = [
        vec![ChatMessage::new(Role::User, TEXTS[0])],
        vec![
            ChatMessage::new(Role::System, "You are Mindory, a reading assistant. Cite passages like [1]."),
            ChatMessage::new(Role::User, passages.clone()),
        ],
        vec![
            ChatMessage::new(Role::User, passages),
            ChatMessage::new(Role::Assistant, "At least thirty years old [1]."),
            ChatMessage::new(Role::User, TEXTS[2]),
        ],
    ];
    for messages in &conversations {
        let theirs = server.post("/apply-template", &json!({ "messages": messages })).await;
        let theirs = theirs["prompt"].as_str().unwrap_or_else(|| panic!("no prompt in {theirs}"));
        let ours = format.prompt(messages).expect("render the template");
        assert_eq!(ours.render(), theirs, "the rendered prompt");
        let their_ids = ids(&server
            .post("/tokenize", &json!({"content": theirs, "add_special": true, "parse_special": true}))
            .await);
        let mut our_ids: Vec<u32> = tok.bos_id().into_iter().collect();
        our_ids.extend(ours.tokens(&tok));
        assert_eq!(our_ids, their_ids, "token ids of the prompt {theirs:?}");
    }
    drop(server);

    // Gemma 3 270M: SentencePiece.
    let gguf = support::models_dir().join(mindory_proto::models::GEMMA_3_270M.file.dest);
    let (tok, _) = PromptFormat::from_file(&gguf).expect("read the GGUF's tokenizer");
    let server = start(tmp.path(), &gguf, "gemma").await;
    same_text_tokens(&server, &tok, "gemma").await;
}
