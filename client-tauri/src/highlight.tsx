// Marks a query's words in a passage, for the Search view.
import { ComponentChildren } from "preact";

const STOP = new Set("the a an and or of to in on at for with by is are was were be it that this as from his her their".split(" "));

/** The query's words worth marking: no stop words, no one-letter words. */
export function queryWords(query: string): string[] {
  return query
    .toLowerCase()
    .split(/[^\p{L}\p{N}']+/u)
    .filter((w) => w.length > 1 && !STOP.has(w));
}

/** `text` with each word starting like a query word wrapped in <mark>. */
export function Highlight({ text, words }: { text: string; words: string[] }) {
  if (words.length === 0) return <>{text}</>;
  const esc = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  // Prefix match: "propose" marks "proposal"; a crude stem, enough to see why a hit came up.
  const re = new RegExp(`\\b(${esc.map((w) => w.slice(0, Math.max(4, w.length - 2))).join("|")})[\\p{L}']*`, "giu");
  const out: ComponentChildren[] = [];
  let last = 0;
  for (const m of text.matchAll(re)) {
    const i = m.index ?? 0;
    if (i > last) out.push(text.slice(last, i));
    out.push(<mark>{m[0]}</mark>);
    last = i + m[0].length;
  }
  out.push(text.slice(last));
  return <>{out}</>;
}
