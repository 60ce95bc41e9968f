"""An OpenAI-compatible chat server for the end-to-end Ask test: llama.cpp's
own HTTP server (through the prebuilt xllamacpp wheel) on a GGUF model.

    python llm_test_server.py --model M.gguf --port P [--ctx 2048] [--threads 2]
        [--chat-template gemma]

It serves /v1/models and a streaming /v1/chat/completions on 127.0.0.1:P,
applies the chat template stored in the GGUF, and runs until killed.
"""
import argparse
import signal
import sys
import threading

import xllamacpp


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    # The Gemma 3 270M base GGUF carries no chat template; name llama.cpp's
    # built-in one (a GGUF that has its own template can pass "").
    ap.add_argument("--chat-template", default="gemma")
    args = ap.parse_args()

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.ctx
    params.n_parallel = 1
    if args.chat_template:
        params.chat_template = args.chat_template
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    server = xllamacpp.Server(params)
    print(f"serving {args.model} on {server.listening_address}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
