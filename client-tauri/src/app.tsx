// The app shell: connection state, the books (always the daemon's, refreshed
// on its events), ingest progress from events, and the view switcher.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { api, Book, Connection, DaemonEvent, errorText, onConnection, onDaemonEvent, AskContext } from "./api";
import { Library } from "./views/library";
import { Search } from "./views/search";
import { Reader } from "./views/reader";
import { Ask } from "./views/ask";
import type { AskSeed, Progress, ReaderTarget } from "./navigation";
import { Rag } from "./views/rag";

export type View = "library" | "search" | "reader" | "ask" | "rag";
const VIEWS: [View, string][] = [
  ["library", "Library"],
  ["search", "Search"],
  ["reader", "Reader"],
  ["ask", "Ask"],
  ["rag", "RAG"],
];


export function App() {
  const [conn, setConn] = useState<Connection | null>(null);
  const [books, setBooks] = useState<Book[]>([]);
  const [progress, setProgress] = useState<Record<number, Progress>>({});
  const [queue, setQueue] = useState({ pending: 0, running: 0 });
  const [view, setView] = useState<View>("library");
  const [reader, setReader] = useState<ReaderTarget | null>(null);
  const [askSeed, setAskSeed] = useState<AskSeed | null>(null);
  const [contexts, setContexts] = useState<{ question: string; context: AskContext }[]>([]);
  const [initialQuery, setInitialQuery] = useState<string | null>(null);
  const [startView, setStartView] = useState<View | null>(null);
  const [error, setError] = useState("");
  const refreshTimer = useRef<number | undefined>(undefined);

  const refresh = useCallback(() => {
    // Events come in bursts (a folder of books): one ListBooks per burst.
    clearTimeout(refreshTimer.current);
    refreshTimer.current = window.setTimeout(async () => {
      try {
        setBooks(await api.listBooks());
        const s = await api.status();
        setQueue({ pending: s.queue_pending, running: s.queue_running });
      } catch (e) {
        setError(errorText(e));
      }
    }, 80);
  }, []);

  useEffect(() => {
    const subs = [
      onConnection((c) => {
        setConn(c);
        // A (re)connection may follow a daemon restart: everything shown is re-read.
        if (c.state === "connected") refresh();
      }),
      onDaemonEvent((e: DaemonEvent) => {
        if (e.type === "progress" && e.book_id !== undefined) {
          setProgress((p) => ({ ...p, [e.book_id!]: { done: e.done ?? 0, total: e.total ?? 0, stage: "embedding" } }));
          return;
        }
        if (e.type === "queue") {
          setQueue({ pending: e.pending ?? 0, running: e.running ?? 0 });
          return;
        }
        if ((e.type === "ready" || e.type === "failed" || e.type === "removed") && e.book_id !== undefined) {
          setProgress((p) => {
            const { [e.book_id!]: _, ...rest } = p;
            return rest;
          });
        }
        if (e.type === "started" && e.book_id !== undefined) {
          setProgress((p) => ({ ...p, [e.book_id!]: { done: 0, total: 0, stage: "parsing" } }));
        }
        refresh();
      }),
    ];
    // The follower may have connected before this listener existed: ask directly too.
    api.hello().then(
      (h) => setConn({ ...h, state: "connected" }),
      (e) => {
        const reason = errorText(e);
        setConn((c) => c ?? { state: reason.includes("protocol") ? "mismatch" : "disconnected", reason });
      },
    );
    refresh();
    api.startup().then((s) => {
      if (s.view && VIEWS.some(([v]) => v === s.view)) {
        setView(s.view as View);
        setStartView(s.view as View);
      }
      if (s.query) setInitialQuery(s.query);
      // `--view reader --query Q` opens the best hit for Q, highlighted;
      // `--view rag --query Q` asks Q and shows its retrieval.
      if (s.view === "reader" && s.query) {
        api.search({ query: s.query, k: 1 }).then(
          (r) => r.hits[0] && openReader({ book_id: r.hits[0].book_id, offset: r.hits[0].location.start, highlight: [r.hits[0].location.start, r.hits[0].location.end] }),
          (e) => setError(errorText(e)),
        );
      }
    });
    return () => subs.forEach((p) => p.then((un) => un()));
  }, [refresh]);

  useEffect(() => {
    // Ctrl+1…5 switch views from anywhere (inputs included).
    const onKey = (e: KeyboardEvent) => {
      if ((e.ctrlKey || e.altKey) && e.key >= "1" && e.key <= "5") {
        setView(VIEWS[Number(e.key) - 1][0]);
        e.preventDefault();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  const openReader = (t: ReaderTarget) => {
    setReader(t);
    setView("reader");
  };
  const startAsk = (seed: AskSeed) => {
    setAskSeed(seed);
    setView("ask");
  };

  if (conn && conn.state !== "connected") return <Down conn={conn} />;

  return (
    <div class="shell">
      <nav class="tabs" role="tablist">
        <span class="brand">Mindory</span>
        {VIEWS.map(([v, label], i) => (
          <button role="tab" aria-selected={view === v} class={view === v ? "tab active" : "tab"} onClick={() => setView(v)} title={`Ctrl+${i + 1}`}>
            {label}
          </button>
        ))}
        <span class="conn">{conn ? `mindoryd ${conn.daemon_version ?? ""} · protocol ${conn.protocol_version ?? "?"}` : "connecting…"}</span>
      </nav>
      {error && (
        <div class="error" onClick={() => setError("")}>
          {error}
        </div>
      )}
      <main>
        {view === "library" && <Library books={books} progress={progress} queue={queue} onError={setError} onOpen={openReader} />}
        {/* Search and Ask stay mounted while hidden: a conversation keeps
            streaming, and results stay, while the Reader shows a citation. */}
        <div class="keep" hidden={view !== "search"}><Search books={books} onOpen={openReader} initialQuery={startView === "search" ? initialQuery : null} /></div>
        {view === "reader" && <Reader target={reader} books={books} onAsk={startAsk} onNavigate={setReader} />}
        <div class="keep" hidden={view !== "ask"}>
          <Ask books={books} seed={askSeed} initialQuestion={startView === "ask" || startView === "rag" ? initialQuery : null} onOpen={openReader}
            onContext={(question, context) => setContexts((c) => [...c.slice(-9), { question, context }])} />
        </div>
        {view === "rag" && <Rag runs={contexts} books={books} onOpen={openReader} />}
      </main>
    </div>
  );
}

/** The daemon is not running (or speaks another protocol). */
function Down({ conn }: { conn: Connection }) {
  const [msg, setMsg] = useState("");
  return (
    <div class="down">
      <h1>{conn.state === "mismatch" ? "Mindory's daemon speaks another protocol" : "Mindory's daemon is not running"}</h1>
      <p>{conn.reason}</p>
      {conn.state === "disconnected" && (
        <button
          autofocus
          onClick={async () => {
            try {
              setMsg(`started ${await api.startDaemon()}; connecting…`);
            } catch (e) {
              setMsg(errorText(e));
            }
          }}
        >
          Start mindoryd
        </button>
      )}
      <p class="muted">{msg || "The app reconnects by itself as soon as the daemon answers."}</p>
    </div>
  );
}
