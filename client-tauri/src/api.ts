// The webview's side of the Tauri commands in src-tauri/src/lib.rs: one
// function per RPC, and the JSON shapes of src-tauri/src/wire.rs.
import { invoke } from "@tauri-apps/api/core";
import { listen, UnlistenFn } from "@tauri-apps/api/event";

export interface Section { heading: string; chunks: number; start: number }
export interface Book {
  id: number; title: string; author: string; path: string; format: string;
  status: "queued" | "indexing" | "embedding" | "ready" | "failed" | "unknown";
  error: string; chunks: number; size_bytes: number; text_chars: number; language: string;
  sections: Section[];
}
export interface RetrieverScore { retriever: string; score: number; rank: number }
export interface Location { chapter: string; page: number | null; page_label: string; start: number; end: number; place: string }
export interface Hit {
  score: number; book_id: number; title: string; path: string; location: Location; text: string;
  chunk_id: number; retrievers: RetrieverScore[]; passage_kind: string; still_embedding: boolean;
}
export interface Passage {
  book_id: number; title: string; chapter: string; page: number | null; page_label: string;
  start: number; end: number; text: string; text_chars: number; place: string;
}
export interface ContextPassage {
  number: number; book_id: number; title: string; path: string; location: Location; text: string;
  score: number; rank: number; retrievers: RetrieverScore[]; in_prompt: boolean; tokens: number;
  /** Why it is not in the prompt; null when it is. */
  left_out: "below_floor" | "over_budget" | "unknown" | null;
}
/** Where the prompt's tokens go (null when there is no one prompt). */
export interface PromptBudget { passages: number; history: number; framing: number; answer_reserve: number; passage_limit: number }
export interface AskContext {
  kind: "context"; conversation_id: string; passages: ContextPassage[]; backend: string; model: string;
  prompt_tokens: number; context_tokens: number; nothing_relevant: boolean; budget: PromptBudget | null;
}
export interface Source { number: number; book_id: number; title: string; location: Location; text: string; cited: boolean }
export interface AskDone {
  kind: "done"; answer: string; sources: Source[]; invalid_citations: number[]; conversation_id: string;
  nothing_relevant: boolean; finish_reason: string; backend: string; model: string; grounded: boolean;
  timings: { first_token_ms: number; total_ms: number; tokens_per_second: number } | null;
}
export type AskEvent =
  | AskContext
  | { kind: "token"; text: string }
  | { kind: "progress"; stage: string; done: number; total: number }
  | AskDone
  | { kind: "unknown" };
export interface AskMessage { request: number; event?: AskEvent; end?: boolean; error?: string }
/** A daemon event, in the shape of `mindory events --json` (docs/cli-json.md). */
export interface DaemonEvent { type: string; seq: number; book_id?: number; done?: number; total?: number; reason?: string; pending?: number; running?: number; path?: string }
export interface Connection { state: "connected" | "disconnected" | "mismatch"; reason?: string; daemon_version?: string; protocol_version?: number; socket?: string }
export interface Status { books: number; chunks: number; queue_pending: number; queue_running: number; embedding_model: string; daemon_version: string }
export interface Folder { path: string; mode: string; mode_reason: string }
export interface Added { path: string; outcome: string; book_id: number; reason: string }
export interface PassageAt { chapter?: number; page_label?: string; offset?: number; max_chars?: number }
export type AssistantArgs =
  | { kind: "ask"; question: string; book_ids?: number[]; conversation_id?: string; k?: number }
  | { kind: "summarize"; book_id: number; chapter: number }
  | { kind: "explain"; book_id: number; at: number; chars?: number; conversation_id?: string };

export const api = {
  hello: () => invoke<Connection>("hello"),
  status: () => invoke<Status>("status"),
  listBooks: () => invoke<Book[]>("list_books"),
  getBook: (id: number) => invoke<Book>("get_book", { id }),
  getPassage: (bookId: number, at: PassageAt) => invoke<Passage>("get_passage", { bookId, at }),
  addPaths: (paths: string[]) => invoke<Added[]>("add_paths", { paths }),
  removeBook: (id: number) => invoke<{ chunks_removed: number }>("remove_book", { id }),
  reindex: (bookIds: number[]) => invoke<{ queued: number[] }>("reindex", { bookIds }),
  listFolders: () => invoke<Folder[]>("list_folders"),
  addFolder: (path: string) => invoke<unknown>("add_folder", { path }),
  removeFolder: (path: string) => invoke<{ books_removed: number }>("remove_folder", { path }),
  search: (args: { query: string; k?: number; book_ids?: number[]; mode?: string }) =>
    invoke<{ hits: Hit[]; took_us: number; embedding_model: string }>("search", { args }),
  llmInfo: () => invoke<{ backend: string; model: string; ready: boolean; detail: string }>("llm_info"),
  assistant: (args: AssistantArgs) => invoke<number>("assistant", { args }),
  stop: (request: number) => invoke<boolean>("stop", { request }),
  startDaemon: () => invoke<string>("start_daemon"),
  startup: () => invoke<{ view: string | null; query: string | null }>("startup"),
};

export const onDaemonEvent = (f: (e: DaemonEvent) => void): Promise<UnlistenFn> =>
  listen<DaemonEvent>("mindory://event", (e) => f(e.payload));
export const onConnection = (f: (c: Connection) => void): Promise<UnlistenFn> =>
  listen<Connection>("mindory://connection", (e) => f(e.payload));
export const onAsk = (f: (m: AskMessage) => void): Promise<UnlistenFn> =>
  listen<AskMessage>("mindory://ask", (e) => f(e.payload));

/** A failed command's message (the Rust side sends sentences). */
export const errorText = (e: unknown): string => (typeof e === "string" ? e : e instanceof Error ? e.message : JSON.stringify(e));
