// Search: query box, mode and book filter, hits as "Title — Chapter — p. N"
// with the query's words marked; each hit's per-retriever scores on demand;
// Enter or a click opens the hit in the Reader.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, Book, errorText, Hit } from "../api";
import { Highlight, queryWords } from "../highlight";
import type { ReaderTarget } from "../navigation";

export function Search(props: { books: Book[]; onOpen: (t: ReaderTarget) => void; initialQuery: string | null }) {
  const [query, setQuery] = useState(props.initialQuery ?? "");
  const [mode, setMode] = useState("hybrid");
  const [book, setBook] = useState(0);
  const [hits, setHits] = useState<Hit[] | null>(null);
  const [took, setTook] = useState(0);
  const [asked, setAsked] = useState("");
  const [scores, setScores] = useState(false);
  const [error, setError] = useState("");
  const input = useRef<HTMLInputElement>(null);

  const run = async (q = query) => {
    if (!q.trim()) return;
    setError("");
    try {
      const r = await api.search({ query: q, k: 10, mode, book_ids: book ? [book] : [] });
      setHits(r.hits);
      setTook(r.took_us);
      setAsked(q);
    } catch (e) {
      setError(errorText(e));
    }
  };
  useEffect(() => {
    input.current?.focus();
  }, []);
  useEffect(() => {
    // The startup query arrives after the first render (--query).
    if (props.initialQuery) {
      setQuery(props.initialQuery);
      run(props.initialQuery);
    }
  }, [props.initialQuery]);

  const words = queryWords(asked);
  return (
    <section class="search">
      <form class="toolbar" onSubmit={(e) => (e.preventDefault(), run())}>
        <input ref={input} type="search" class="grow" placeholder="Search your books by meaning or words" value={query}
          onInput={(e) => setQuery(e.currentTarget.value)} aria-label="Search query" />
        <select value={mode} onChange={(e) => setMode(e.currentTarget.value)} aria-label="Retrieval mode">
          <option value="hybrid">hybrid</option>
          <option value="vector">meaning</option>
          <option value="keyword">words</option>
        </select>
        <select value={book} onChange={(e) => setBook(Number(e.currentTarget.value))} aria-label="Book filter">
          <option value={0}>all books</option>
          {props.books.map((b) => <option value={b.id}>{b.title}</option>)}
        </select>
        <button type="submit">Search</button>
        <label class="check"><input type="checkbox" checked={scores} onChange={(e) => setScores(e.currentTarget.checked)} /> scores</label>
      </form>
      {error && <div class="error">{error}</div>}
      {hits && <p class="muted">{hits.length} hits in {(took / 1000).toFixed(1)} ms</p>}
      <ol class="hits">
        {hits?.map((h, i) => (
          <li class="hit">
            <button class="place link" onClick={() => props.onOpen({ book_id: h.book_id, offset: h.location.start, highlight: [h.location.start, h.location.end] })}
              aria-label={`Open hit ${i + 1} in the Reader`}>
              {i + 1}. {h.location.place}
            </button>
            <span class="score">{h.score.toFixed(3)}{h.still_embedding ? " · still embedding" : ""}{h.passage_kind ? ` · ${h.passage_kind}` : ""}</span>
            <p class="text"><Highlight text={h.text} words={words} /></p>
            {scores && (
              <table class="scores">
                <tr><th>retriever</th><th>rank</th><th>score</th></tr>
                {h.retrievers.map((r) => <tr><td>{r.retriever}</td><td>{r.rank}</td><td>{r.score.toFixed(4)}</td></tr>)}
              </table>
            )}
          </li>
        ))}
      </ol>
    </section>
  );
}
