// Reader: a book at a chapter, a page or a char offset (GetPassage), the
// cited range highlighted and scrolled into view, previous/next chapter, and
// the assistant's Summarize (this chapter) and Explain (the selection).
import { useEffect, useRef, useState } from "preact/hooks";
import { api, Book, errorText, Passage } from "../api";
import type { AskSeed, ReaderTarget } from "../navigation";


/** The 1-based chapter whose section contains `offset`, if the book has sections. */
function chapterAt(book: Book, offset: number): number | undefined {
  let found: number | undefined;
  book.sections.forEach((s, i) => {
    if (s.start <= offset) found = i + 1;
  });
  return found;
}

export function Reader(props: { target: ReaderTarget | null; books: Book[]; onAsk: (s: AskSeed) => void; onNavigate: (t: ReaderTarget) => void }) {
  const { target } = props;
  const [book, setBook] = useState<Book | null>(null);
  const [passage, setPassage] = useState<Passage | null>(null);
  const [chapter, setChapter] = useState<number | undefined>(undefined);
  const [error, setError] = useState("");
  const mark = useRef<HTMLElement>(null);
  const textRef = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (!target) return;
    (async () => {
      setError("");
      try {
        const b = await api.getBook(target.book_id);
        setBook(b);
        let at = target;
        // A hit's offset opens its whole chapter, so the highlight has context around it.
        if (at.offset !== undefined && b.sections.length > 0) {
          const c = chapterAt(b, at.offset);
          if (c) at = { ...at, chapter: c, offset: undefined };
        }
        const p =
          at.chapter !== undefined ? await api.getPassage(b.id, { chapter: at.chapter })
          : at.page_label !== undefined ? await api.getPassage(b.id, { page_label: at.page_label })
          : await api.getPassage(b.id, { offset: Math.max(0, (at.offset ?? 0) - 600), max_chars: 4000 });
        setChapter(at.chapter);
        setPassage(p);
      } catch (e) {
        setError(errorText(e));
      }
    })();
  }, [target]);
  useEffect(() => mark.current?.scrollIntoView({ block: "center" }), [passage]);

  if (!target) {
    return (
      <section class="reader">
        <p class="empty">Open a book from the Library, a hit from Search or a citation from Ask.</p>
        <ul>{props.books.filter((b) => b.status === "ready").map((b) => <li><button class="link" onClick={() => props.onNavigate({ book_id: b.id, chapter: 1 })}>{b.title}</button></li>)}</ul>
      </section>
    );
  }
  const go = (c: number) => props.onNavigate({ book_id: target.book_id, chapter: c });
  const chapters = book?.sections.length ?? 0;

  let body = <>{passage?.text}</>;
  if (passage && target.highlight) {
    const [hs, he] = target.highlight;
    const s = Math.max(0, hs - passage.start);
    const e = Math.min(passage.text.length, he - passage.start);
    // Offsets count Unicode scalar values, as JS strings do not: index by code points.
    const chars = Array.from(passage.text);
    if (e > 0 && s < chars.length) {
      body = (
        <>
          {chars.slice(0, s).join("")}
          <mark ref={mark} class="cited">{chars.slice(s, e).join("")}</mark>
          {chars.slice(e).join("")}
        </>
      );
    }
  }
  const explainSelection = () => {
    const sel = window.getSelection();
    if (!passage || !sel || sel.rangeCount === 0 || !textRef.current) return;
    const range = sel.getRangeAt(0);
    const pre = document.createRange();
    pre.selectNodeContents(textRef.current);
    pre.setEnd(range.startContainer, range.startOffset);
    const at = passage.start + Array.from(pre.toString()).length;
    props.onAsk({ kind: "explain", book_id: passage.book_id, at, chars: Math.max(200, Array.from(sel.toString()).length), label: `Explain: “${sel.toString().slice(0, 80)}…”` });
  };

  return (
    <section class="reader">
      <div class="toolbar">
        <button disabled={!chapter || chapter <= 1} onClick={() => go((chapter ?? 1) - 1)} title="Previous chapter (Alt+←)">← Previous</button>
        <span class="grow place">{passage?.place ?? book?.title}</span>
        <span class="muted">{chapter ? `chapter ${chapter} of ${chapters}` : ""}</span>
        <button disabled={!chapter || chapter >= chapters} onClick={() => go((chapter ?? 0) + 1)} title="Next chapter (Alt+→)">Next →</button>
        {chapter && <button onClick={() => props.onAsk({ kind: "summarize", book_id: target.book_id, chapter, label: `Summarize ${passage?.place}` })}>Summarize chapter</button>}
        <button onClick={explainSelection}>Explain selection</button>
      </div>
      {error && <div class="error">{error}</div>}
      <div class="text" ref={textRef} tabIndex={0}
        onKeyDown={(e) => {
          if (e.altKey && e.key === "ArrowLeft" && chapter && chapter > 1) go(chapter - 1);
          if (e.altKey && e.key === "ArrowRight" && chapter && chapter < chapters) go(chapter + 1);
        }}>
        {body}
      </div>
    </section>
  );
}
