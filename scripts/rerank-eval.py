"""Offline LLM reranking on the retrieval eval (issue 10): scores each
(question, hybrid candidate) pair with an instruct GGUF through llama.cpp
(the prebuilt xllamacpp wheel; `scripts/llm-test-server` prints a Python that
has it) and replays R@5 / MRR@10 with the candidates reordered.

    python rerank-eval.py score  --dump D.json --model M.gguf --cache C.jsonl
        [--sets debian-faq,r-faq] [--k 10] [--list hybrid] [--threads 2]
        [--limit-seconds S] [--seed 10] [--group 20]
    python rerank-eval.py replay --dump D.json --cache C.jsonl [--model NAME]

The dump is the retrieval bench's `MINDORY_EVAL_DUMP=D.json` (JSON lines: per
query its set, text, the fused `hybrid` list at k = 10 and `hybrid20` at
k = 20, each entry [chunk id, score, relevant, kind, words], and `texts`).

`score` asks, pointwise, "Passage: ... Question: ... Does the passage answer
the question? Answer Yes or No." in ChatML and keeps P(Yes) from the first
token's probabilities (Yes / (Yes + No) over llama.cpp's top 20), never the
sampled text. Pairs already in the cache (by model, query, chunk) are
skipped, so reruns are free and a stopped run resumes. Queries are taken
in a seeded random order (`--seed`), `--group` at a time, so a run stopped
early leaves a random subset fully scored; within a group pairs go passage
by passage so that llama.cpp's prompt cache reuses the passage's prefix
across questions. The run is thus faster than an Ask would be: the cost
figures are computed from full prompt lengths at the measured prefill rate
of whole (uncached) prompts, not from the run's wall time.

`replay` prints, per set, R@5 / MRR@10 for the hybrid list as is, the LLM
score alone over the hybrid top k, and interpolations
(1 - w) * minmax(fused) + w * P(Yes), on the queries whose top k are all
scored, with how many questions each variant fixes and breaks against
hybrid (a fix brings the first relevant hit into the top 5, a break takes
it out), and the measured cost.
"""
import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

PROMPT_VERSION = "v1"
SYSTEM = "You judge whether a passage answers a question."


def prompt_of(question: str, passage: str) -> str:
    # The passage comes first so that the prompt cache can keep it while
    # the question changes (see the module doc).
    return (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\nPassage: {passage}\n\nQuestion: {question}\n\n"
        "Does the passage answer the question? Answer Yes or No.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def load_dump(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_cache(path: Path, model: str | None = None):
    cache = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("prompt_version") != PROMPT_VERSION:
                continue
            if model and r["model"] != model:
                continue
            cache[(r["model"], r["query"], r["chunk"])] = r
    return cache


def p_yes(top_logprobs) -> float:
    # Every spelling of the two answers among the top tokens counts; a word
    # absent from the top 20 has a negligible probability.
    yes = no = 0.0
    for t in top_logprobs:
        word = t["token"].strip().lower()
        if word == "yes":
            yes += math.exp(t["logprob"])
        elif word == "no":
            no += math.exp(t["logprob"])
    return yes / (yes + no) if yes + no > 0 else 0.5


def score(args) -> int:
    import xllama

    model_name = Path(args.model).stem
    rows = [r for r in load_dump(Path(args.dump)) if r["set"] in args.sets.split(",")]
    cache = load_cache(Path(args.cache), model_name)
    # Queries in a seeded random order, in groups, so that a run stopped
    # early leaves a random subset of queries fully scored; within a group,
    # passage by passage (prompt cache reuse).
    random.Random(args.seed).shuffle(rows)
    pairs = []
    for i, r in enumerate(rows):
        for entry in r["lists"][args.list][: args.k]:
            chunk = entry[0]
            if (model_name, r["query"], chunk) not in cache:
                pairs.append((i // args.group, chunk, r["query"], r["texts"][str(chunk)], r["set"]))
    pairs.sort(key=lambda p: (p[0], p[1], p[2]))
    pairs = [p[1:] for p in pairs]
    print(f"{len(pairs)} pairs to score with {model_name}", file=sys.stderr)

    server = xllama.server(args.model, 2048, args.threads)
    start = time.time()
    with open(args.cache, "a") as out:
        for i, (chunk, query, text, set_name) in enumerate(pairs):
            if args.limit_seconds and time.time() - start > args.limit_seconds:
                print(f"stopped after {i} pairs (time limit)", file=sys.stderr)
                break
            r = server.handle_completions(
                {
                    "prompt": prompt_of(query, text),
                    "n_predict": 1,
                    "n_probs": 20,
                    "temperature": 0,
                    "cache_prompt": True,
                }
            )
            choice = r["choices"][0]
            top = choice["logprobs"]["content"][0]["top_logprobs"]
            t = r["timings"]
            rec = {
                "model": model_name,
                "prompt_version": PROMPT_VERSION,
                "set": set_name,
                "query": query,
                "chunk": chunk,
                "p_yes": p_yes(top),
                "prompt_tokens": r["usage"]["prompt_tokens"],
                "evaluated_tokens": t["prompt_n"],
                "prompt_ms": t["prompt_ms"],
            }
            out.write(json.dumps(rec) + "\n")
            out.flush()
            if i % 25 == 0:
                print(
                    f"{i}/{len(pairs)} {time.time() - start:.0f} s p_yes {rec['p_yes']:.3f} "
                    f"({rec['evaluated_tokens']} of {rec['prompt_tokens']} tokens in {rec['prompt_ms']:.0f} ms)",
                    file=sys.stderr,
                )
    return 0


def first_rank(relevant_flags):
    for i, rel in enumerate(relevant_flags[:10]):
        if rel:
            return i + 1
    return None


def metrics(ranks):
    n = len(ranks)
    if n == 0:
        return float("nan"), float("nan")
    r5 = sum(1 for r in ranks if r and r <= 5) / n
    mrr = sum(1 / r for r in ranks if r) / n
    return r5, mrr


def fixes_breaks(base, new):
    # A fix brings the first relevant hit into the top 5 from below it (or
    # from outside the list); a break does the opposite. Moves inside the
    # top 5 show in MRR only.
    inside = lambda r: r is not None and r <= 5
    fixes = sum(1 for b, n in zip(base, new) if not inside(b) and inside(n))
    breaks = sum(1 for b, n in zip(base, new) if inside(b) and not inside(n))
    return fixes, breaks


def reorder(entries, k, key):
    # The top k are reordered by `key`; the rest keep their place.
    head = sorted(entries[:k], key=key, reverse=True)
    return head + entries[k:]


def replay(args) -> int:
    rows = load_dump(Path(args.dump))
    cache = load_cache(Path(args.cache), args.model)
    models = sorted({m for (m, _, _) in cache})
    weights = [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0]
    for set_name in args.sets.split(","):
        ranks = [first_rank([e[2] for e in r["lists"]["hybrid"]]) for r in rows if r["set"] == set_name]
        r5, mrr = metrics(ranks)
        print(f"hybrid on all {len(ranks)} {set_name} queries: R@5 {r5:.3f}, MRR@10 {mrr:.3f}")
    print()
    for model in models:
        print(f"## {model}\n")
        for k, list_name in [(5, "hybrid"), (10, "hybrid"), (20, "hybrid20")]:
            table = {}
            sizes = {}
            for set_name in args.sets.split(","):
                queries = [r for r in rows if r["set"] == set_name]
                complete = [
                    r
                    for r in queries
                    if all((model, r["query"], e[0]) in cache for e in r["lists"][list_name][:k])
                ]
                sizes[set_name] = (len(complete), len(queries))
                if not complete:
                    continue
                # The baseline is always the eval's own list (k = 10).
                base = [first_rank([e[2] for e in r["lists"]["hybrid"]]) for r in complete]
                table.setdefault("hybrid (k = 10 list, as is)", {})[set_name] = (metrics(base), (0, 0))
                for w in weights:
                    new = []
                    for r in complete:
                        entries = r["lists"][list_name]
                        head = entries[:k]
                        lo = min(e[1] for e in head)
                        hi = max(e[1] for e in head)
                        norm = lambda s: (s - lo) / (hi - lo) if hi > lo else 1.0

                        def key(e, r=r, w=w, norm=norm):
                            p = cache[(model, r["query"], e[0])]["p_yes"]
                            return (1 - w) * norm(e[1]) + w * p

                        new.append(first_rank([e[2] for e in reorder(entries, k, key)]))
                    label = "LLM score alone" if w == 1.0 else f"(1-w) fused + w P(Yes), w = {w}"
                    if w == 0.0:
                        label = "fused score only (this list)"
                    table.setdefault(label, {})[set_name] = (metrics(new), fixes_breaks(base, new))
            sets = [s for s in args.sets.split(",") if sizes[s][0]]
            if not sets:
                continue
            print(f"### k = {k} ({list_name}); queries with all top {k} scored: "
                  + ", ".join(f"{s} {a}/{b}" for s, (a, b) in sizes.items()) + "\n")
            print("| variant | " + " | ".join(f"{s} R@5 / MRR@10 (fixed, broken)" for s in sets) + " |")
            print("|---|" + "---|" * len(sets))
            for label, per_set in table.items():
                cells = []
                for s in sets:
                    (r5, mrr), (f, b) = per_set[s]
                    cells.append(f"{r5:.3f} / {mrr:.3f} (+{f} −{b})")
                print(f"| {label} | " + " | ".join(cells) + " |")
            print()
        # How well P(Yes) separates relevant from other candidates over every
        # scored pair, complete queries or not: the chance that a relevant
        # candidate outscores an irrelevant one (ROC AUC; 0.5 is chance),
        # against the same for the fused score within each query's list.
        relevant = {}
        for r in rows:
            for e in r["lists"]["hybrid"] + r["lists"]["hybrid20"]:
                relevant[(r["query"], e[0])] = e[2]
        scored = [(rec["p_yes"], relevant[(q, c)]) for (m, q, c), rec in cache.items() if m == model and (q, c) in relevant]
        pos = [p for p, rel in scored if rel]
        neg = [p for p, rel in scored if not rel]
        if pos and neg:
            auc = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
            print(
                f"P(Yes) over {len(scored)} scored pairs: relevant mean {sum(pos) / len(pos):.3f} ({len(pos)}), "
                f"others {sum(neg) / len(neg):.3f} ({len(neg)}); AUC {auc:.3f}\n"
            )
        # The same within each query, where the fused score is comparable:
        # of the (relevant, other) candidate pairs of one query's k = 10
        # list that are both scored, how many each score orders right.
        llm_right = fused_right = both = 0
        for r in rows:
            head = [e for e in r["lists"]["hybrid"] if (model, r["query"], e[0]) in cache]
            for a in head:
                for b in head:
                    if a[2] and not b[2]:
                        both += 1
                        pa = cache[(model, r["query"], a[0])]["p_yes"]
                        pb = cache[(model, r["query"], b[0])]["p_yes"]
                        llm_right += (pa > pb) + 0.5 * (pa == pb)
                        fused_right += (a[1] > b[1]) + 0.5 * (a[1] == b[1])
        if both:
            print(
                f"within a query ({both} relevant/other pairs): P(Yes) orders {llm_right / both:.3f} right, "
                f"the fused score {fused_right / both:.3f}\n"
            )
        # Cost: prefill rate from prompts that were evaluated whole (no
        # passage prefix in the cache), applied to the full prompt lengths.
        recs = [r for (m, _, _), r in cache.items() if m == model]
        whole = [r for r in recs if r["evaluated_tokens"] >= 0.9 * r["prompt_tokens"]]
        tokens = sum(r["prompt_tokens"] for r in recs) / len(recs)
        if whole:
            rate = sum(r["evaluated_tokens"] for r in whole) / (sum(r["prompt_ms"] for r in whole) / 1000)
            print(
                f"cost: {len(recs)} pairs, {tokens:.0f} prompt tokens per pair on average; "
                f"prefill {rate:.1f} tokens/s over {len(whole)} whole prompts; "
                f"{tokens / rate:.2f} s per pair, so {5 * tokens / rate:.1f} s per query at k = 5, "
                f"{10 * tokens / rate:.1f} s at k = 10, {20 * tokens / rate:.1f} s at k = 20\n"
            )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score")
    s.add_argument("--dump", required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--cache", required=True)
    s.add_argument("--sets", default="debian-faq,r-faq")
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--list", default="hybrid")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--limit-seconds", type=float, default=0)
    s.add_argument("--seed", type=int, default=10)
    s.add_argument("--group", type=int, default=20)
    r = sub.add_parser("replay")
    r.add_argument("--dump", required=True)
    r.add_argument("--cache", required=True)
    r.add_argument("--sets", default="debian-faq,r-faq")
    r.add_argument("--model", default=None)
    args = ap.parse_args()
    return score(args) if args.cmd == "score" else replay(args)


if __name__ == "__main__":
    sys.exit(main())
