//! Conversations: the earlier turns a follow-up question sees.
//!
//! They live in memory only (a restart forgets them, as a chat window
//! would): at most [`MAX_CONVERSATIONS`], the least recently used dropped
//! first, each keeping its last [`MAX_TURNS`] turns.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

/// Conversations kept at once.
pub const MAX_CONVERSATIONS: usize = 256;
/// Turns kept per conversation.
pub const MAX_TURNS: usize = 8;

/// One question and its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// The reader's question.
    pub question: String,
    /// The answer given.
    pub answer: String,
}

#[derive(Debug)]
struct Conversation {
    turns: VecDeque<Turn>,
    used: Instant,
}

/// All conversations of this daemon run.
#[derive(Debug, Default)]
pub struct Conversations {
    inner: Mutex<HashMap<String, Conversation>>,
    counter: AtomicU64,
}

impl Conversations {
    /// The id to use (a fresh one when `id` is empty or unknown, so a
    /// client holding an id from before a restart starts over cleanly) and
    /// its earlier turns, oldest first.
    pub fn open(&self, id: &str) -> (String, Vec<Turn>) {
        let mut map = self.inner.lock();
        if let Some(c) = map.get_mut(id) {
            c.used = Instant::now();
            return (id.to_string(), c.turns.iter().cloned().collect());
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let fresh = format!("c{:x}{:04x}", nanos ^ (u64::from(std::process::id()) << 32), n & 0xffff);
        if map.len() >= MAX_CONVERSATIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, c)| c.used).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(
            fresh.clone(),
            Conversation {
                turns: VecDeque::new(),
                used: Instant::now(),
            },
        );
        (fresh, Vec::new())
    }

    /// Records a finished turn.
    pub fn record(&self, id: &str, turn: Turn) {
        let mut map = self.inner.lock();
        if let Some(c) = map.get_mut(id) {
            if c.turns.len() == MAX_TURNS {
                c.turns.pop_front();
            }
            c.turns.push_back(turn);
            c.used = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_ups_see_earlier_turns_and_unknown_ids_start_over() {
        let c = Conversations::default();
        let (id, turns) = c.open("");
        assert!(turns.is_empty());
        for i in 0..10 {
            c.record(
                &id,
                Turn {
                    question: format!("q{i}"),
                    answer: format!("a{i}"),
                },
            );
        }
        let (same, turns) = c.open(&id);
        assert_eq!(same, id);
        assert_eq!(turns.len(), MAX_TURNS);
        assert_eq!(turns[0].question, "q2", "the oldest turns are dropped");
        let (other, turns) = c.open("c-from-before-a-restart");
        assert_ne!(other, id);
        assert!(turns.is_empty());
    }
}
