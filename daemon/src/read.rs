//! Reading: the text of a book at a location — a chapter, a page, or a char
//! offset — so a client can open the book where a citation points.

use crate::store::{StoreError, StoreReader};
use crate::text::PageRef;

/// Characters returned from an offset when the caller does not say.
pub const DEFAULT_CHARS: usize = 2_000;

/// Where to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// 1-based section number (as `mindory book` lists them).
    Chapter(u32),
    /// A page as citations show it: its label ("57", "iv") or, when no page
    /// has that label, its 1-based physical number.
    Page(String),
    /// Char offset in the normalized text.
    Offset(u64),
}

/// Why a location cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The book is not ready (queued, indexing or failed).
    #[error("book {0} has no text yet (it is not ready; see `mindory books`)")]
    NotReady(u64),
    /// The location is outside the book.
    #[error("{0}")]
    OutOfRange(String),
}

impl ReadError {
    /// What kind of failure this is (see [`crate::error_kind`]).
    pub fn kind(&self) -> crate::error_kind::ErrorKind {
        match self {
            ReadError::Store(e) => e.kind(),
            ReadError::NotReady(_) => crate::error_kind::ErrorKind::Precondition,
            ReadError::OutOfRange(_) => crate::error_kind::ErrorKind::OutOfRange,
        }
    }
}

/// Text at a location.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    /// Book id.
    pub book_id: u64,
    /// Book title.
    pub title: String,
    /// Heading path where the text starts.
    pub chapter: String,
    /// Page where the text starts, when known.
    pub page: Option<PageRef>,
    /// Char range start.
    pub start: u64,
    /// Char range end.
    pub end: u64,
    /// The text.
    pub text: String,
    /// Length of the whole normalized text.
    pub text_chars: u64,
}

/// Reads `max_chars` (0 = default for the location kind) at `at` in `book_id`.
pub fn passage(store: &StoreReader, book_id: u64, at: At, max_chars: usize) -> Result<Passage, ReadError> {
    let book = store.book(book_id)?.ok_or(StoreError::NoSuchBook(book_id))?;
    let text = store.text(book_id)?.ok_or(ReadError::NotReady(book_id))?;
    let chars: Vec<char> = text.chars().collect();
    let total = chars.len() as u64;
    let (start, natural_end) = match at {
        At::Chapter(n) => {
            let idx = (n as usize).checked_sub(1).filter(|i| *i < book.sections.len()).ok_or_else(|| {
                ReadError::OutOfRange(format!(
                    "book {book_id} has {} sections; pick --chapter 1 to {}",
                    book.sections.len(),
                    book.sections.len()
                ))
            })?;
            let end = book.sections.get(idx + 1).map_or(total, |s| s.start);
            (book.sections[idx].start, end)
        }
        At::Page(ref p) => {
            let chunks = store.chunks(&store.chunk_ids_of(book_id)?)?;
            if chunks.iter().all(|c| c.page.is_none()) {
                return Err(ReadError::OutOfRange(format!(
                    "book {book_id} has no page numbers (only paged formats such as PDF do)"
                )));
            }
            let by_label = chunks
                .iter()
                .find(|c| c.page.as_ref().is_some_and(|q| q.label.as_deref() == Some(p.as_str())));
            let by_number = || {
                let n: u32 = p.parse().ok()?;
                chunks.iter().find(|c| c.page.as_ref().is_some_and(|q| q.number == n))
            };
            let first = by_label
                .or_else(by_number)
                .ok_or_else(|| ReadError::OutOfRange(format!("book {book_id} has no passage starting on page {p}")))?;
            let number = first.page.as_ref().map_or(0, |q| q.number);
            let end = chunks
                .iter()
                .find(|c| c.start > first.start && c.page.as_ref().is_some_and(|q| q.number > number))
                .map_or(total, |c| c.start);
            (first.start, end.max(first.end))
        }
        At::Offset(offset) => {
            if offset >= total {
                return Err(ReadError::OutOfRange(format!(
                    "offset {offset} is past the end of book {book_id} ({total} characters)"
                )));
            }
            // Start at the beginning of the paragraph holding the offset.
            let mut s = offset as usize;
            while s > 0 && !(chars[s - 1] == '\n' && s >= 2 && chars[s - 2] == '\n') {
                s -= 1;
            }
            (s as u64, total)
        }
    };
    let limit = if max_chars > 0 {
        max_chars as u64
    } else if matches!(at, At::Offset(_)) {
        DEFAULT_CHARS as u64
    } else {
        u64::MAX
    };
    let end = natural_end.min(start.saturating_add(limit)).min(total);
    let chapter = book
        .sections
        .iter()
        .rev()
        .find(|s| s.start <= start)
        .map(|s| s.heading.clone())
        .unwrap_or_default();
    // The page of the passage that holds the start, for paged formats.
    let page = match store
        .chunks(&store.chunk_ids_of(book_id)?)?
        .into_iter()
        .rev()
        .find(|c| c.start <= start)
    {
        Some(c) => c.page,
        None => None,
    };
    Ok(Passage {
        book_id,
        title: book.title,
        chapter,
        page,
        start,
        end,
        text: chars[start as usize..end as usize].iter().collect(),
        text_chars: total,
    })
}
