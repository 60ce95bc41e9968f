// RAG view: why an answer says what it says. For a question asked in Ask:
// the ranking (every retrieved passage, its rank and score per retriever,
// whether it went into the prompt), the prompt's token budget, a comparison
// with another run (shared, gained, lost passages), and the timeline (where
// the hits fall in each book; a click opens the Reader there).
//
// Retriever columns come from the data: a retriever the daemon adds later
// (keyword, fused, reranked…) shows up without a change here.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from "chart.js";
import { scaleLinear, scaleSequential } from "d3-scale";
import { interpolateViridis } from "d3-scale-chromatic";
import { AskContext, Book, ContextPassage } from "../api";
import type { ReaderTarget } from "../navigation";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Tooltip, Legend);

type Run = { question: string; context: AskContext };
const key = (p: ContextPassage) => `${p.book_id}:${p.location.start}`;

export function Rag(props: { runs: Run[]; books: Book[]; onOpen: (t: ReaderTarget) => void }) {
  const { runs } = props;
  const [pick, setPick] = useState(runs.length - 1);
  const [other, setOther] = useState(runs.length - 2);
  useEffect(() => setPick(runs.length - 1), [runs.length]);
  if (runs.length === 0) return <section class="rag"><p class="empty">Ask a question first: this view shows what retrieval found for it and what went into the prompt.</p></section>;
  const run = runs[Math.max(0, Math.min(pick, runs.length - 1))];
  const passages = [...run.context.passages].sort((a, b) => a.rank - b.rank);
  const retrievers = Array.from(new Set(passages.flatMap((p) => p.retrievers.map((r) => r.retriever))));
  const open = (p: ContextPassage) => props.onOpen({ book_id: p.book_id, offset: p.location.start, highlight: [p.location.start, p.location.end] });

  return (
    <section class="rag">
      <div class="toolbar">
        <label>Question <select value={pick} onChange={(e) => setPick(Number(e.currentTarget.value))} aria-label="Run">
          {runs.map((r, i) => <option value={i}>{r.question.slice(0, 80)}</option>)}
        </select></label>
        <span class="muted">{run.context.backend} {run.context.model} · {passages.length} retrieved, {passages.filter((p) => p.in_prompt).length} in the prompt</span>
      </div>
      <h2>Ranking</h2>
      <table class="ranking">
        <thead>
          <tr>
            <th>rank</th><th>[n]</th><th>passage</th><th>score</th>
            {retrievers.map((r) => <th>{r}</th>)}
            <th>tokens</th><th>in prompt</th>
          </tr>
        </thead>
        <tbody>
          {passages.map((p) => (
            <tr class={p.in_prompt ? "in" : "out"}>
              <td>{p.rank}</td>
              <td>{p.number || ""}</td>
              <td><button class="link" onClick={() => open(p)}>{p.location.place}</button></td>
              <td>{p.score.toFixed(3)}</td>
              {retrievers.map((r) => {
                const s = p.retrievers.find((x) => x.retriever === r);
                return <td>{s ? `#${s.rank} · ${s.score.toFixed(3)}` : "—"}</td>;
              })}
              <td>{p.tokens}</td>
              <td>{p.in_prompt ? "yes" : `no: ${leftOutReason(p)}`}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <ScoreChart passages={passages} retrievers={retrievers} />
      <h2>Token budget</h2>
      <Budget context={run.context} />
      <h2>Timeline</h2>
      <Timeline passages={passages} books={props.books} onOpen={open} />
      {runs.length > 1 && (
        <>
          <h2>Compare with</h2>
          <select value={other} onChange={(e) => setOther(Number(e.currentTarget.value))} aria-label="Run to compare">
            {runs.map((r, i) => <option value={i}>{r.question.slice(0, 80)}</option>)}
          </select>
          {other >= 0 && other !== pick && <Compare a={run} b={runs[other]} />}
        </>
      )}
    </section>
  );
}

/** Scores per retriever for each passage, as grouped bars. */
function ScoreChart({ passages, retrievers }: { passages: ContextPassage[]; retrievers: string[] }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (!canvas.current) return;
    const palette = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c"];
    const chart = new Chart(canvas.current, {
      type: "bar",
      data: {
        labels: passages.map((p) => `#${p.rank}${p.number ? ` [${p.number}]` : ""}`),
        // Retrievers score on different scales (cosine 0–1, BM25 unbounded):
        // each is shown relative to its best score here, the raw score in the tooltip and table.
        datasets: retrievers.map((r, i) => {
          const raw = passages.map((p) => p.retrievers.find((x) => x.retriever === r)?.score ?? null);
          const best = Math.max(...raw.map((v) => v ?? 0)) || 1;
          return { label: r, data: raw.map((v) => (v === null ? null : v / best)), backgroundColor: palette[i % palette.length] };
        }),
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { y: { min: 0, max: 1, title: { display: true, text: "score ÷ retriever's best" } } },
        plugins: { legend: { position: "bottom" } },
      },
    });
    return () => chart.destroy();
  }, [passages, retrievers]);
  return <div class="chart"><canvas ref={canvas} aria-label="Scores per retriever" /></div>;
}

/** Why a passage stayed out of the prompt, in words. */
function leftOutReason(p: ContextPassage): string {
  switch (p.left_out) {
    case "below_floor": return "below the relevance floor";
    case "over_budget": return "over the token budget";
    default: return "left out";
  }
}

/** The context window as a bar: passages, history, framing, the answer's reserve, and what is unused. */
function Budget({ context }: { context: AskContext }) {
  const b = context.budget;
  if (!b) return <p class="muted">No single prompt for this run (a chapter summarized part by part, or nothing relevant found).</p>;
  const window = Math.max(1, context.context_tokens || context.prompt_tokens + b.answer_reserve);
  const free = Math.max(0, window - context.prompt_tokens - b.answer_reserve);
  const part = (n: number, cls: string, label: string) => (
    <div class={`part ${cls}`} style={{ width: `${(100 * n) / window}%` }} title={`${label}: ${n} tokens`}>{n / window > 0.08 ? `${label} ${n}` : ""}</div>
  );
  return (
    <div>
      <div class="budget">
        {part(b.passages, "passages", "passages")}
        {part(b.history, "history", "history")}
        {part(b.framing, "framing", "framing")}
        {part(b.answer_reserve, "reserve", "answer reserve")}
        {part(free, "free", "unused")}
      </div>
      <p class="muted">
        {context.prompt_tokens} prompt tokens of a {context.context_tokens}-token window: {b.passages} passages
        {b.passage_limit > 0 ? ` (limit ${b.passage_limit})` : ""}, {b.history} history, {b.framing} framing; {b.answer_reserve} kept for the answer
      </p>
    </div>
  );
}

/** One strip per book: chapter ticks, and a mark per hit at its char position, coloured by score. */
function Timeline({ passages, books, onOpen }: { passages: ContextPassage[]; books: Book[]; onOpen: (p: ContextPassage) => void }) {
  const ids = Array.from(new Set(passages.map((p) => p.book_id)));
  const scores = passages.map((p) => p.score);
  const color = scaleSequential(interpolateViridis).domain([Math.min(...scores), Math.max(...scores) || 1]);
  return (
    <div class="timeline">
      {ids.map((id) => {
        const book = books.find((b) => b.id === id);
        const length = book?.text_chars || Math.max(...passages.filter((p) => p.book_id === id).map((p) => p.location.end));
        const x = scaleLinear().domain([0, length]).range([0, 100]);
        return (
          <div class="strip-row">
            <span class="strip-title">{book?.title ?? `book ${id}`}</span>
            <div class="strip" data-book={id} data-chars={length}>
              {book?.sections.map((s) => <span class="tick" style={{ left: `${x(s.start)}%` }} title={s.heading} />)}
              {passages.filter((p) => p.book_id === id).map((p) => (
                <button class="mark" data-start={p.location.start} style={{ left: `${x(p.location.start)}%`, background: color(p.score) }}
                  title={`#${p.rank} ${p.location.place} (${p.score.toFixed(3)})`} aria-label={`Hit ${p.rank}: ${p.location.place}`} onClick={() => onOpen(p)} />
              ))}
            </div>
          </div>
        );
      })}
    </div>
  );
}

function Compare({ a, b }: { a: Run; b: Run }) {
  const [shared, gained, lost] = useMemo(() => {
    const inA = new Map(a.context.passages.filter((p) => p.in_prompt).map((p) => [key(p), p]));
    const inB = new Map(b.context.passages.filter((p) => p.in_prompt).map((p) => [key(p), p]));
    return [
      [...inA.values()].filter((p) => inB.has(key(p))),
      [...inB.values()].filter((p) => !inA.has(key(p))),
      [...inA.values()].filter((p) => !inB.has(key(p))),
    ];
  }, [a, b]);
  const list = (title: string, ps: ContextPassage[], cls: string) => (
    <div class={`col ${cls}`}><h3>{title} ({ps.length})</h3><ul>{ps.map((p) => <li>{p.location.place}</li>)}</ul></div>
  );
  return <div class="compare">{list("shared", shared, "shared")}{list("gained", gained, "gained")}{list("lost", lost, "lost")}</div>;
}
