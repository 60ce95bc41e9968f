"""llama.cpp's side of the LLM speed bench (`benches/benches/llm_speed.rs`):
loads a GGUF with xllamacpp (prebuilt llama.cpp), answers the same chat
messages several times and prints llama.cpp's own timings as JSON lines.

    python llm_speed.py --model M.gguf --threads 2 --runs 3 --max-tokens 64 < messages.json

The first run warms up and is not printed. Each printed line has
prompt_n, prompt_ms, predicted_n and predicted_ms.
"""
import argparse
import json
import sys

import xllamacpp


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    messages = json.load(sys.stdin)

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    # No prompt cache between runs: every run prefills the whole prompt.
    params.cache_prompt = False
    server = xllamacpp.Server(params)
    for i in range(args.runs + 1):
        out = server.handle_chat_completions(
            {
                "messages": messages,
                "max_tokens": args.max_tokens,
                "temperature": 0,
                "stream": False,
                "cache_prompt": False,
            }
        )
        if "timings" not in out:
            print(json.dumps({"error": out}), flush=True)
            return 1
        if i > 0:
            t = out["timings"]
            print(
                json.dumps(
                    {
                        "prompt_n": t["prompt_n"],
                        "prompt_ms": t["prompt_ms"],
                        "predicted_n": t["predicted_n"],
                        "predicted_ms": t["predicted_ms"],
                        "text": out["choices"][0]["message"]["content"],
                    }
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
