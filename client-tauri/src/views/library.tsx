// Library: every book with its status, live progress from daemon events,
// failed books with their reason, add (dialog or drag-and-drop), follow a
// folder, remove, reindex. The list is virtualized: only the rows in view
// are in the DOM, so 5,000 books scroll as smoothly as 50.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { open } from "@tauri-apps/plugin-dialog";
import { getCurrentWebview } from "@tauri-apps/api/webview";
import { api, Book, errorText, Folder } from "../api";
import type { Progress, ReaderTarget } from "../navigation";

const ROW = 52;

export function Library(props: {
  books: Book[];
  progress: Record<number, Progress>;
  queue: { pending: number; running: number };
  onError: (e: string) => void;
  onOpen: (t: ReaderTarget) => void;
}) {
  const { books, progress, queue, onError } = props;
  const [filter, setFilter] = useState("");
  const [selected, setSelected] = useState(0);
  const [folders, setFolders] = useState<Folder[]>([]);
  const [note, setNote] = useState("");
  const [dropping, setDropping] = useState(false);
  const [scroll, setScroll] = useState(0);
  const [height, setHeight] = useState(600);
  const listRef = useRef<HTMLDivElement>(null);

  const shown = useMemo(() => {
    const f = filter.toLowerCase();
    return f ? books.filter((b) => `${b.title} ${b.author} ${b.path}`.toLowerCase().includes(f)) : books;
  }, [books, filter]);
  const failed = books.filter((b) => b.status === "failed");
  const busy = books.filter((b) => b.status === "queued" || b.status === "indexing" || b.status === "embedding");

  const add = async (paths: string[]) => {
    if (paths.length === 0) return;
    try {
      const r = await api.addPaths(paths);
      const counts = r.reduce<Record<string, number>>((m, a) => ({ ...m, [a.outcome]: (m[a.outcome] ?? 0) + 1 }), {});
      const rejected = r.filter((a) => a.outcome === "rejected").map((a) => `${a.path}: ${a.reason}`);
      setNote(Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ") + (rejected.length ? ` — ${rejected.join("; ")}` : ""));
    } catch (e) {
      onError(errorText(e));
    }
  };
  const loadFolders = () => api.listFolders().then(setFolders, (e) => onError(errorText(e)));

  useEffect(() => {
    loadFolders();
    const el = listRef.current;
    const resize = () => el && setHeight(el.clientHeight);
    resize();
    window.addEventListener("resize", resize);
    // Files dropped on the window are added, like the Add button's.
    const un = getCurrentWebview().onDragDropEvent((e) => {
      if (e.payload.type === "enter" || e.payload.type === "over") setDropping(true);
      else if (e.payload.type === "leave") setDropping(false);
      else if (e.payload.type === "drop") {
        setDropping(false);
        add(e.payload.paths);
      }
    });
    return () => {
      window.removeEventListener("resize", resize);
      un.then((f) => f());
    };
  }, []);

  const pick = async (directory: boolean, follow: boolean) => {
    const chosen = await open({ multiple: !follow, directory });
    const paths = chosen === null ? [] : Array.isArray(chosen) ? chosen : [chosen];
    if (follow) {
      for (const p of paths) await api.addFolder(p).catch((e) => onError(errorText(e)));
      loadFolders();
    } else add(paths);
  };
  const remove = async (b: Book) => {
    if (!confirm(`Remove “${b.title}” from the library? The file stays where it is.`)) return;
    await api.removeBook(b.id).catch((e) => onError(errorText(e)));
  };

  // Overall progress: passages embedded over passages known, across the books in flight.
  const inflight = Object.values(progress);
  const total = inflight.reduce((s, p) => s + p.total, 0);
  const done = inflight.reduce((s, p) => s + p.done, 0);

  const first = Math.max(0, Math.floor(scroll / ROW) - 5);
  const last = Math.min(shown.length, Math.ceil((scroll + height) / ROW) + 5);

  const onKey = (e: KeyboardEvent) => {
    const b = shown[selected];
    if (e.key === "ArrowDown") setSelected((s) => Math.min(shown.length - 1, s + 1));
    else if (e.key === "ArrowUp") setSelected((s) => Math.max(0, s - 1));
    else if (e.key === "Enter" && b) props.onOpen({ book_id: b.id, chapter: 1 });
    else if (e.key === "Delete" && b) remove(b);
    else return;
    e.preventDefault();
  };
  useEffect(() => {
    const el = listRef.current;
    if (!el) return;
    const top = selected * ROW;
    if (top < el.scrollTop) el.scrollTop = top;
    else if (top + ROW > el.scrollTop + el.clientHeight) el.scrollTop = top + ROW - el.clientHeight;
  }, [selected]);

  return (
    <section class={dropping ? "library dropping" : "library"}>
      <div class="toolbar">
        <input type="search" placeholder="Filter books" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} aria-label="Filter books" />
        <button onClick={() => pick(false, false)}>Add files…</button>
        <button onClick={() => pick(true, false)}>Add folder…</button>
        <button onClick={() => pick(true, true)}>Follow folder…</button>
        <button onClick={() => api.reindex([]).catch((e) => onError(errorText(e)))}>Reindex all</button>
      </div>
      <div class="summary">
        <span>
          {books.length === 1 ? "1 book" : `${books.length} books`} · {books.reduce((s, b) => s + b.chunks, 0).toLocaleString()} passages
        </span>
        {(busy.length > 0 || queue.pending + queue.running > 0) && (
          <span class="overall">
            ingesting {busy.length} ({queue.running} running, {queue.pending} waiting)
            {total > 0 && <progress max={total} value={done} aria-label="overall progress" />}
          </span>
        )}
        {note && <span class="muted">{note}</span>}
      </div>
      {folders.length > 0 && (
        <div class="folders">
          {folders.map((f) => (
            <span class="chip" title={f.mode_reason || f.mode}>
              following {f.path}{" "}
              <button class="link" onClick={() => api.removeFolder(f.path).then(loadFolders, (e) => onError(errorText(e)))} aria-label={`Unfollow ${f.path}`}>
                unfollow
              </button>
            </span>
          ))}
        </div>
      )}
      {failed.length > 0 && (
        <details class="failed-list" open>
          <summary>{failed.length} failed</summary>
          {failed.map((b) => (
            <div>
              <b>{b.title || b.path}</b>: {b.error}
            </div>
          ))}
        </details>
      )}
      <div class="head row">
        <span>Title</span><span>Author</span><span>Format</span><span>Chapters</span><span>Passages</span><span>Status</span><span></span>
      </div>
      <div class="rows" ref={listRef} tabIndex={0} onKeyDown={onKey} onScroll={(e) => setScroll(e.currentTarget.scrollTop)} aria-label="Books">
        {shown.length === 0 && <p class="empty">No books yet. Add files, a folder, or drop files on this window.</p>}
        <div style={{ height: `${shown.length * ROW}px`, position: "relative" }}>
          {shown.slice(first, last).map((b, i) => {
            const idx = first + i;
            const p = progress[b.id];
            return (
              <div class={idx === selected ? "row book selected" : "row book"} style={{ top: `${idx * ROW}px` }} onClick={() => setSelected(idx)}
                onDblClick={() => props.onOpen({ book_id: b.id, chapter: 1 })}>
                <span class="title" title={b.path}>{b.title || b.path}</span>
                <span>{b.author}</span>
                <span>{b.format}</span>
                <span>{b.sections.length}</span>
                <span>{b.chunks}</span>
                <span class={`status ${b.status}`} title={b.error}>
                  {b.status}
                  {p && p.total > 0 && b.status !== "ready" && <progress max={p.total} value={p.done} aria-label={`${b.title} progress`} />}
                </span>
                <span class="actions">
                  <button class="link" onClick={() => api.reindex([b.id]).catch((e) => onError(errorText(e)))}>reindex</button>
                  <button class="link" onClick={() => remove(b)}>remove</button>
                </span>
              </div>
            );
          })}
        </div>
      </div>
    </section>
  );
}
