#!/usr/bin/env python3
"""Scripting Mindory over gRPC from Python: connect to the daemon's Unix
socket, add a book and follow the daemon's events until it is ready, list
the library, search, and stream an answer with its sources.

Setup (once):
    python3 -m venv venv && venv/bin/pip install grpcio grpcio-tools
    venv/bin/python -m grpc_tools.protoc -I proto --python_out=examples/python \\
        --grpc_python_out=examples/python proto/mindory.proto

Run (the daemon must be running; the socket defaults to the CLI's):
    venv/bin/python examples/python/mindory_client.py [--socket PATH] [--add FILE] \\
        [--search TEXT] [--ask QUESTION]

One thing every gRPC-over-Unix-socket client must know: the HTTP/2
`:authority` that grpcio sends for a `unix:` target is not a valid host name,
and the daemon's HTTP/2 server rejects such a request (the call fails with
"RST_STREAM with error code 1"). Set `grpc.default_authority` to
`localhost`, as below; tonic, grpc-go and grpcurl send a valid one already.
"""

import argparse
import os
import sys
import threading

import grpc

import mindory_pb2 as pb
import mindory_pb2_grpc as rpc

PROTOCOL_VERSION = 1


def default_socket():
    """The CLI's default: $MINDORY_SOCKET, else $XDG_RUNTIME_DIR/mindory/mindoryd.sock,
    else /tmp/mindory-UID/mindoryd.sock."""
    if os.environ.get("MINDORY_SOCKET"):
        return os.environ["MINDORY_SOCKET"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "mindory", "mindoryd.sock")
    return os.path.join(os.environ.get("TMPDIR", "/tmp"), f"mindory-{os.getuid()}", "mindoryd.sock")


def connect(socket_path):
    channel = grpc.insecure_channel(f"unix://{os.path.abspath(socket_path)}",
                                    options=[("grpc.default_authority", "localhost")])
    hello = rpc.DaemonStub(channel).Hello(
        pb.HelloRequest(client_protocol_version=PROTOCOL_VERSION, client_name="python-example"), timeout=10)
    if hello.protocol_version != PROTOCOL_VERSION:
        sys.exit(f"the daemon speaks protocol {hello.protocol_version}, this script {PROTOCOL_VERSION}")
    print(f"connected: mindoryd {hello.daemon_version}, embedding model {hello.embedding_model}")
    return channel


def add_and_wait(channel, path, timeout=600):
    """Adds a file and follows the event stream until its book is ready or failed."""
    events = rpc.EventsStub(channel).Subscribe(pb.SubscribeRequest(), timeout=timeout)
    added = rpc.LibraryStub(channel).AddPaths(pb.AddPathsRequest(paths=[os.path.abspath(path)]))
    result = added.results[0]
    if result.outcome == pb.ADD_OUTCOME_REJECTED:
        sys.exit(f"{result.path}: {result.reason}")
    if result.outcome == pb.ADD_OUTCOME_UNCHANGED:
        print(f"book {result.book_id} is already in the library")
        events.cancel()
        return result.book_id
    print(f"queued book {result.book_id}: {result.path}")
    for event in events:
        kind = event.WhichOneof("kind")
        book_id = getattr(getattr(event, kind), "book_id", None) if kind else None
        if book_id != result.book_id:
            continue
        if kind == "progress":
            print(f"  embedded {event.progress.done}/{event.progress.total}")
        elif kind == "ready":
            print(f"  ready: {event.ready.title} ({event.ready.chunks} passages)")
            events.cancel()
            return result.book_id
        elif kind == "failed":
            events.cancel()
            sys.exit(f"  failed: {event.failed.reason}")
    sys.exit("the event stream ended before the book was ready")


def list_books(channel):
    books = rpc.LibraryStub(channel).ListBooks(pb.ListBooksRequest()).books
    for b in books:
        print(f"  #{b.id} {b.title or b.path} — {b.chunks} passages ({pb.BookStatus.Name(b.status)})")
    return books


def search(channel, text, k=3):
    hits = rpc.SearchStub(channel).Search(pb.SearchRequest(query=text, k=k)).hits
    for rank, h in enumerate(hits, 1):
        place = " — ".join(x for x in (h.title, h.location.chapter, h.location.page_label) if x)
        print(f"  {rank}. {place} (score {h.score:.3f})")
        print(f"     {' '.join(h.text.split())[:160]}…")
    return hits


def ask(channel, question):
    """Streams an answer: tokens as they arrive, then the sources it cites."""
    answer = None
    for event in rpc.AssistantStub(channel).Ask(pb.AskRequest(question=question)):
        kind = event.WhichOneof("kind")
        if kind == "context":
            kept = [p for p in event.context.passages if p.in_prompt]
            print(f"  ({len(kept)} passages in the prompt, {event.context.prompt_tokens} tokens)")
        elif kind == "token":
            print(event.token.text, end="", flush=True)
        elif kind == "done":
            answer = event.done
            print()
            for s in answer.sources:
                if s.cited:
                    print(f"  [{s.number}] {s.title} — {s.location.chapter}")
    return answer


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--socket", default=default_socket())
    ap.add_argument("--add", help="a book file to add first")
    ap.add_argument("--search", default="How old must a senator be?")
    ap.add_argument("--ask", help="a question to answer (needs an LLM backend)")
    a = ap.parse_args()
    channel = connect(a.socket)
    if a.add:
        add_and_wait(channel, a.add)
    print("books:")
    list_books(channel)
    print(f"search: {a.search}")
    if not search(channel, a.search):
        sys.exit("no hits")
    if a.ask:
        print(f"ask: {a.ask}")
        if ask(channel, a.ask) is None:
            sys.exit("the answer did not finish")


if __name__ == "__main__":
    main()
