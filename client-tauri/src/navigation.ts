// What the views hand each other: where to open the Reader, what to ask the
// assistant from the Reader, and a book's ingest progress from the events.
// A leaf module, so views that link to each other (Ask cites into the
// Reader, the Reader starts Summarize and Explain in Ask) import their
// shared vocabulary from here rather than from each other.

/** Where the Reader opens a book. */
export interface ReaderTarget {
  book_id: number;
  chapter?: number;
  page_label?: string;
  offset?: number;
  /** Char range [start, end) to highlight, in the book's normalized text. */
  highlight?: [number, number];
}

/** A Summarize or Explain started outside the Ask view. */
export type AskSeed = (
  | { kind: "summarize"; book_id: number; chapter: number }
  | { kind: "explain"; book_id: number; at: number; chars?: number }
) & { label: string };

/** A book's ingest progress, from the daemon's events. */
export interface Progress { done: number; total: number; stage: string }
