#!/usr/bin/env python3
"""Writes the answer model's own short answers to the retrieval eval's
questions, for the `hybrid+expansion` row of the retrieval bench.

Ask widens a question's search with the answer model's short answer from
its own knowledge (`[llm] expand_questions`, daemon/src/assistant/ask.rs).
The retrieval bench measures that fusion without running a model: this
script writes the answers once, with the daemon's instructions and token
limit (read from `daemon/src/assistant/prompt.rs`), greedy, on llama.cpp (the prebuilt xllamacpp wheel;
`scripts/llm-test-server` prints a Python that has it) serving the same
GGUF as the local backend, whose greedy answers follow llama.cpp's.

    MINDORY_EVAL_SETS=debian-faq,r-faq cargo bench -p mindory-benches --bench retrieval
    $(scripts/llm-test-server) scripts/expansion-eval.py \\
        --queries target/retrieval-eval-queries.tsv --sets debian-faq,r-faq \\
        --model ~/.local/share/mindory/models/qwen2.5-coder-1.5b/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \\
        --out target/expansions.jsonl
    MINDORY_EVAL_EXPANSIONS=target/expansions.jsonl MINDORY_EVAL_SETS=debian-faq,r-faq \\
        cargo bench -p mindory-benches --bench retrieval

Answers already in `--out` are kept, so a stopped run resumes.
"""

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path

PROMPT_RS = Path(__file__).resolve().parent.parent / "daemon/src/assistant/prompt.rs"


def daemon_guess_settings() -> tuple[str, int]:
    """The daemon's own guess instructions and token limit
    (`prompt::GUESS_INSTRUCTIONS`, `prompt::GUESS_TOKENS`), read from its
    source so that the eval cannot drift from what Ask sends."""
    source = PROMPT_RS.read_text()
    instructions = re.search(r'pub const GUESS_INSTRUCTIONS: &str =\s*"((?:[^"\\]|\\.)*)";', source)
    tokens = re.search(r"pub const GUESS_TOKENS: usize = (\d+);", source)
    if not instructions or not tokens:
        sys.exit(f"GUESS_INSTRUCTIONS or GUESS_TOKENS not found in {PROMPT_RS}")
    return instructions.group(1).replace('\\"', '"'), int(tokens.group(1))


def questions(path: Path, sets: list[str]) -> list[tuple[str, str]]:
    """(set, question) of the bench's hybrid rows, in file order."""
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["mode"] == "hybrid" and row["set"] in sets:
                out.append((row["set"], row["query"]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", required=True, type=Path, help="the bench's retrieval-eval-queries.tsv")
    ap.add_argument("--sets", default="debian-faq,r-faq")
    ap.add_argument("--model", required=True, help="the GGUF the answers come from")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import xllama

    instructions, max_tokens = daemon_guess_settings()
    wanted = questions(args.queries, args.sets.split(","))
    done = set()
    if args.out.exists():
        done = {(d["set"], d["query"]) for d in map(json.loads, args.out.read_text().splitlines()) if d}
    todo = [q for q in wanted if q not in done]
    print(f"{len(todo)} of {len(wanted)} questions to answer", file=sys.stderr)

    server = xllama.server(args.model, 1024, args.threads)
    start = time.time()
    with open(args.out, "a") as out:
        for i, (set_name, query) in enumerate(todo):
            r = server.handle_chat_completions(
                {
                    "messages": [
                        {"role": "system", "content": instructions},
                        {"role": "user", "content": query},
                    ],
                    "max_tokens": max_tokens,
                    "temperature": 0,
                    "stop": ["\n\n"],
                }
            )
            answer = r["choices"][0]["message"]["content"].strip()
            out.write(json.dumps({"set": set_name, "query": query, "answer": answer}) + "\n")
            out.flush()
            if i % 20 == 0:
                print(f"{i}/{len(todo)} {time.time() - start:.0f} s: {answer[:80]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
