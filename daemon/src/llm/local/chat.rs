//! Prompts from chat messages: the chat template an instruct model's GGUF
//! carries (`tokenizer.chat_template`, Jinja, rendered with minijinja), or a
//! plain "Question: / Answer:" transcript for base models that carry none.
//!
//! A rendered prompt keeps the template's markup apart from the messages'
//! text ([`Prompt`]): only markup may turn control-token names such as
//! `<|im_start|>` into control tokens, so a book or a question that contains
//! one cannot forge a turn. The template is rendered with a placeholder in
//! place of each message's content, and the output is split at the
//! placeholders.

use super::tokens::GgufTokenizer;
use crate::llm::{ChatMessage, Role};

/// Text that ends a base model's transcript answer: it would go on to invent
/// the next question or another numbered passage ("\n[4] constitution — …").
pub const TRANSCRIPT_STOPS: &[&str] = &["\nQuestion:", "\nPassages:", "\n["];

/// Placeholder delimiters (private-use characters) for message contents.
const OPEN: char = '\u{F8F0}';
const CLOSE: char = '\u{F8F1}';

/// One piece of a rendered prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// The template's own text: control-token names in it are tokens.
    Markup(String),
    /// A message's content: always plain text.
    Text(String),
}

/// A prompt ready to tokenize.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prompt {
    pub pieces: Vec<Piece>,
}

impl Prompt {
    /// A prompt that is all plain text.
    pub fn text(s: impl Into<String>) -> Self {
        Prompt {
            pieces: vec![Piece::Text(s.into())],
        }
    }

    /// Token ids, without BOS.
    pub fn tokens(&self, tok: &GgufTokenizer) -> Vec<u32> {
        let mut out = Vec::new();
        for p in &self.pieces {
            match p {
                Piece::Markup(s) => out.extend(tok.encode_markup(s)),
                Piece::Text(s) => out.extend(tok.encode(s)),
            }
        }
        out
    }

    /// The prompt as one string (for logs and tests).
    pub fn render(&self) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Markup(s) | Piece::Text(s) => s.as_str(),
            })
            .collect()
    }
}

/// How a model wants its messages.
#[derive(Debug, Clone)]
pub enum PromptFormat {
    /// A base model: a transcript it continues.
    Transcript,
    /// An instruct model: its own chat template.
    Template(Box<ChatTemplate>),
}

/// Whether the GGUF carries a chat template: an instruct model, which the
/// template engine renders chats for, not a base model's transcript.
pub fn has_chat_template(ct: &candle_core::quantized::gguf_file::Content) -> bool {
    chat_template(ct).is_some()
}

fn chat_template(ct: &candle_core::quantized::gguf_file::Content) -> Option<&String> {
    ct.metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .filter(|source| !source.trim().is_empty())
}

impl PromptFormat {
    /// The chat template when the GGUF has one, the transcript otherwise.
    pub fn from_gguf(ct: &candle_core::quantized::gguf_file::Content, tok: &GgufTokenizer) -> Result<Self, String> {
        match chat_template(ct) {
            Some(source) => {
                let piece = |key: &str| {
                    ct.metadata
                        .get(key)
                        .and_then(|v| v.to_u32().ok())
                        .map(|id| tok.decode_piece(id))
                        .unwrap_or_default()
                };
                ChatTemplate::new(
                    source.clone(),
                    piece("tokenizer.ggml.bos_token_id"),
                    piece("tokenizer.ggml.eos_token_id"),
                )
                .map(|t| PromptFormat::Template(Box::new(t)))
            }
            _ => Ok(PromptFormat::Transcript),
        }
    }

    /// Reads a GGUF's metadata (not its weights): its tokenizer and the
    /// format its messages take.
    pub fn from_file(path: &std::path::Path) -> Result<(GgufTokenizer, Self), super::error::LocalError> {
        let (ct, _) = super::tokens::open_gguf(path)?;
        let tok = GgufTokenizer::from_gguf(&ct).map_err(|e| super::error::gguf_error(path, e.0))?;
        let format = Self::from_gguf(&ct, &tok).map_err(|e| super::error::gguf_error(path, e))?;
        Ok((tok, format))
    }

    /// Renders the messages, ending where the model's answer begins.
    pub fn prompt(&self, messages: &[ChatMessage]) -> Result<Prompt, String> {
        match self {
            PromptFormat::Transcript => Ok(Prompt::text(transcript(messages))),
            PromptFormat::Template(t) => t.render(messages),
        }
    }

    /// Stop strings the format needs besides the model's end-of-turn tokens.
    pub fn stops(&self) -> &'static [&'static str] {
        match self {
            PromptFormat::Transcript => TRANSCRIPT_STOPS,
            PromptFormat::Template(_) => &[],
        }
    }
}

/// A Jinja chat template, compiled once.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    /// Compiles `source`; `bos`/`eos` are the texts of those tokens, which
    /// some templates print.
    pub fn new(source: String, bos: String, eos: String) -> Result<Self, String> {
        let mut env = minijinja::Environment::new();
        // Hugging Face templates call `raise_exception` to reject bad turns.
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source)
            .map_err(|e| format!("the GGUF's chat template does not compile: {e}"))?;
        Ok(ChatTemplate { env, bos, eos })
    }

    /// Renders `messages` with the generation prompt appended.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<Prompt, String> {
        let placeholders: Vec<minijinja::Value> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                minijinja::context! {
                    role => role_name(m.role),
                    content => format!("{OPEN}{i}{CLOSE}"),
                }
            })
            .collect();
        let template = self.env.get_template("chat").map_err(|e| e.to_string())?;
        let out = template
            .render(minijinja::context! {
                messages => placeholders,
                add_generation_prompt => true,
                bos_token => self.bos.as_str(),
                eos_token => self.eos.as_str(),
            })
            .map_err(|e| format!("the chat template failed: {e}"))?;
        let mut pieces = Vec::new();
        let mut rest = out.as_str();
        while let Some(open) = rest.find(OPEN) {
            let after = &rest[open + OPEN.len_utf8()..];
            let Some(close) = after.find(CLOSE) else { break };
            let Ok(i) = after[..close].parse::<usize>() else { break };
            let Some(m) = messages.get(i) else { break };
            if open > 0 {
                pieces.push(Piece::Markup(rest[..open].to_string()));
            }
            pieces.push(Piece::Text(m.content.clone()));
            rest = &after[close + CLOSE.len_utf8()..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Markup(rest.to_string()));
        }
        Ok(Prompt { pieces })
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// Renders chat messages as a transcript a base model continues: system
/// text first, earlier turns as Question/Answer pairs, the last message
/// followed by "Answer:" unless it already ends with a cue ("Summary:").
pub fn transcript(messages: &[ChatMessage]) -> String {
    let mut s = String::new();
    let last = messages.len().saturating_sub(1);
    for (i, m) in messages.iter().enumerate() {
        let content = m.content.trim();
        match m.role {
            Role::System => {
                s.push_str(content);
                s.push_str("\n\n");
            }
            Role::User if i == last => {
                s.push_str(content);
                if !content.ends_with(':') {
                    s.push_str("\nAnswer:");
                }
            }
            Role::User => {
                s.push_str("Question: ");
                s.push_str(content);
                s.push('\n');
            }
            Role::Assistant => {
                s.push_str("Answer: ");
                s.push_str(content);
                s.push_str("\n\n");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: Role, c: &str) -> ChatMessage {
        ChatMessage::new(role, c)
    }

    #[test]
    fn transcripts_end_with_an_answer_cue() {
        let s = transcript(&[
            m(Role::User, "Who is Emma?"),
            m(Role::Assistant, "A young woman [1]."),
            m(Role::User, "Passages:\n\n[1] Emma\ntext\n\nQuestion: And Mr Knightley?"),
        ]);
        assert_eq!(
            s,
            "Question: Who is Emma?\nAnswer: A young woman [1].\n\nPassages:\n\n[1] Emma\ntext\n\nQuestion: And Mr Knightley?\nAnswer:"
        );
        assert!(transcript(&[m(Role::User, "Text\n\nSummary:")]).ends_with("Summary:"));
    }

    /// A ChatML template in the shape of Qwen 2.5's (its non-tool branch).
    const CHATML: &str = "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or (message.role == 'assistant') %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

    #[test]
    fn template_keeps_message_text_apart_from_markup() {
        let t = ChatTemplate::new(CHATML.into(), String::new(), "<|im_end|>".into()).unwrap();
        let p = t
            .render(&[m(Role::System, "Cite [n]."), m(Role::User, "Is <|im_end|> a token?")])
            .unwrap();
        assert_eq!(
            p.render(),
            "<|im_start|>system\nCite [n].<|im_end|>\n<|im_start|>user\nIs <|im_end|> a token?<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            p.pieces,
            vec![
                Piece::Markup("<|im_start|>system\n".into()),
                Piece::Text("Cite [n].".into()),
                Piece::Markup("<|im_end|>\n<|im_start|>user\n".into()),
                Piece::Text("Is <|im_end|> a token?".into()),
                Piece::Markup("<|im_end|>\n<|im_start|>assistant\n".into()),
            ]
        );
    }

    #[test]
    fn templates_that_do_not_compile_or_raise_are_errors() {
        assert!(ChatTemplate::new("{% if %}".into(), String::new(), String::new()).is_err());
        let t = ChatTemplate::new("{{ raise_exception('no system role') }}".into(), String::new(), String::new()).unwrap();
        let e = t.render(&[m(Role::User, "hi")]).unwrap_err();
        assert!(e.contains("no system role"), "{e}");
    }
}
