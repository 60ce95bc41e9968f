// Ask: a conversation with the assistant. Tokens show as they arrive, [n]
// citations link into the Reader (invalid ones are flagged), follow-ups
// reuse the conversation, Stop cancels the RPC. Summarize and Explain from
// the Reader arrive here as seeds and stream the same way.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, AskContext, AskDone, AskMessage, AssistantArgs, Book, errorText, onAsk } from "../api";
import type { AskSeed, ReaderTarget } from "../navigation";


interface Turn {
  label: string;
  request: number | null;
  text: string;
  context: AskContext | null;
  done: AskDone | null;
  progress: string;
  error: string;
  running: boolean;
}

export function Ask(props: {
  books: Book[];
  seed: AskSeed | null;
  initialQuestion: string | null;
  onOpen: (t: ReaderTarget) => void;
  onContext: (question: string, c: AskContext) => void;
}) {
  const [turns, setTurns] = useState<Turn[]>([]);
  const [question, setQuestion] = useState("");
  const [book, setBook] = useState(0);
  const conversation = useRef("");
  const byRequest = useRef(new Map<number, number>());
  const seedSeen = useRef<AskSeed | null>(null);
  const turnCount = useRef(0);
  const input = useRef<HTMLTextAreaElement>(null);

  const update = (i: number, f: (t: Turn) => Turn) => setTurns((ts) => ts.map((t, j) => (j === i ? f(t) : t)));

  useEffect(() => {
    const un = onAsk((m: AskMessage) => {
      const i = byRequest.current.get(m.request);
      if (i === undefined) return;
      if (m.end) {
        update(i, (t) => ({ ...t, running: false, error: m.error && m.error !== "cancelled" ? m.error : m.error === "cancelled" ? "stopped" : t.error }));
        return;
      }
      const e = m.event!;
      if (e.kind === "context") {
        conversation.current = e.conversation_id || conversation.current;
        update(i, (t) => {
          props.onContext(t.label, e);
          return { ...t, context: e };
        });
      } else if (e.kind === "token") update(i, (t) => ({ ...t, text: t.text + e.text }));
      else if (e.kind === "progress") update(i, (t) => ({ ...t, progress: `${e.stage} ${e.done}/${e.total}` }));
      else if (e.kind === "done") {
        conversation.current = e.conversation_id || conversation.current;
        update(i, (t) => ({ ...t, done: e, text: e.answer || t.text }));
      }
    });
    input.current?.focus();
    return () => un.then((f) => f());
  }, []);

  const start = async (label: string, args: AssistantArgs) => {
    // The turn's index is known before the state update runs: events for it
    // may arrive before the next render.
    const index = turnCount.current++;
    setTurns((ts) => [...ts, { label, request: null, text: "", context: null, done: null, progress: "", error: "", running: true }]);
    try {
      const request = await api.assistant(args);
      byRequest.current.set(request, index);
      update(index, (t) => ({ ...t, request }));
    } catch (e) {
      update(index, (t) => ({ ...t, running: false, error: errorText(e) }));
    }
  };
  const ask = (q: string) => {
    if (!q.trim()) return;
    setQuestion("");
    start(q, { kind: "ask", question: q, conversation_id: conversation.current, book_ids: book ? [book] : [] });
  };
  useEffect(() => {
    const s = props.seed;
    if (!s || seedSeen.current === s) return;
    seedSeen.current = s;
    if (s.kind === "summarize") start(s.label, { kind: "summarize", book_id: s.book_id, chapter: s.chapter });
    else start(s.label, { kind: "explain", book_id: s.book_id, at: s.at, chars: s.chars, conversation_id: conversation.current });
  }, [props.seed]);
  useEffect(() => {
    if (props.initialQuestion && turns.length === 0) ask(props.initialQuestion);
  }, [props.initialQuestion]);

  const running = turns.find((t) => t.running && t.request !== null);
  return (
    <section class="ask">
      <div class="turns">
        {turns.length === 0 && <p class="empty">Ask a question about your books. Answers cite passages as [1], [2]…; click one to read it.</p>}
        {turns.map((t) => (
          <article class="turn">
            <h3>{t.label}</h3>
            {t.progress && t.running && <p class="muted">{t.progress}</p>}
            <p class="answer">
              <Cited text={t.text} turn={t} onOpen={props.onOpen} />
              {t.running && <span class="cursor">▍</span>}
            </p>
            {t.done && (
              <p class="muted">
                {t.done.backend} {t.done.model} · {t.done.timings ? `${t.done.timings.total_ms} ms, first token ${t.done.timings.first_token_ms} ms` : ""}
                {t.done.invalid_citations.length > 0 && <span class="invalid"> · invalid citations: {t.done.invalid_citations.map((n) => `[${n}]`).join(" ")}</span>}
                {!t.done.grounded && <span class="invalid"> · not found in your books</span>}
              </p>
            )}
            {t.error && <p class="error">{t.error}</p>}
          </article>
        ))}
      </div>
      <form class="toolbar askbar" onSubmit={(e) => (e.preventDefault(), ask(question))}>
        <textarea ref={input} class="grow" rows={2} placeholder={conversation.current ? "Follow-up question (Enter to send)" : "Question (Enter to send, Shift+Enter for a new line)"}
          value={question} onInput={(e) => setQuestion(e.currentTarget.value)} aria-label="Question"
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey) {
              e.preventDefault();
              ask(question);
            }
            if (e.key === "Escape" && running) api.stop(running.request!);
          }} />
        <select value={book} onChange={(e) => setBook(Number(e.currentTarget.value))} aria-label="Book filter">
          <option value={0}>all books</option>
          {props.books.map((b) => <option value={b.id}>{b.title}</option>)}
        </select>
        {running ? <button type="button" class="stop" onClick={() => api.stop(running.request!)}>Stop (Esc)</button> : <button type="submit">Ask</button>}
        <button type="button" onClick={() => { conversation.current = ""; turnCount.current = 0; byRequest.current.clear(); setTurns([]); }}>New conversation</button>
      </form>
    </section>
  );
}

/** An answer with each [n] a link to its passage, or flagged when no passage has that number. */
function Cited({ text, turn, onOpen }: { text: string; turn: Turn; onOpen: (t: ReaderTarget) => void }) {
  const parts = text.split(/(\[\d+\])/g);
  return (
    <>
      {parts.map((p) => {
        const m = /^\[(\d+)\]$/.exec(p);
        if (!m) return p;
        const n = Number(m[1]);
        const src = turn.context?.passages.find((c) => c.number === n && c.in_prompt);
        if (!src) return <span class="cite invalid" title="no passage has this number">{p}</span>;
        return (
          <button class="cite link" title={src.location.place}
            onClick={() => onOpen({ book_id: src.book_id, offset: src.location.start, highlight: [src.location.start, src.location.end] })}>
            {p}
          </button>
        );
      })}
    </>
  );
}
