#!/usr/bin/env python3
"""Bad input over raw gRPC: a stock grpcio client, with stubs generated from
proto/mindory.proto, sends what no Mindory client would (empty and huge
queries, absurd counts, unknown ids, locations outside a book, a message
over the daemon's size limit, bytes that are not protobuf) and prints what
came back, one JSON object per line:

    {"case": "...", "code": "INVALID_ARGUMENT", "message": "...", "ms": 12, ...}

`code` is "OK" when the call succeeded; successful calls add what bounds
their answer (hits, bytes, chars). The Rust test (tests/it/scripting/
bad_input.rs) holds the expectations; this script only reports, so a new
misbehaviour shows as a failed expectation, never as a crash of the script.

Usage: bad_input.py --socket PATH --book-id N   (stubs on PYTHONPATH)
"""

import argparse
import json
import os
import sys
import time

import grpc

import mindory_pb2 as pb
import mindory_pb2_grpc as rpc

# Every call is bounded: a hang shows up as DEADLINE_EXCEEDED.
TIMEOUT = 60
U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1


def report(case, fn):
    started = time.monotonic()
    out = {"case": case}
    try:
        extra = fn() or {}
        out.update({"code": "OK", "message": ""})
        out.update(extra)
    except grpc.RpcError as e:
        out.update({"code": e.code().name, "message": e.details() or ""})
    out["ms"] = int((time.monotonic() - started) * 1000)
    print(json.dumps(out), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--book-id", type=int, required=True)
    a = ap.parse_args()
    # Python's default receive limit is 4 MiB, like tonic's: a response over
    # it would fail here with RESOURCE_EXHAUSTED.
    channel = grpc.insecure_channel(f"unix://{os.path.abspath(a.socket)}",
                                    options=[("grpc.default_authority", "localhost"),
                                             ("grpc.max_send_message_length", 64 * 1024 * 1024)])
    search = rpc.SearchStub(channel)
    library = rpc.LibraryStub(channel)
    daemon = rpc.DaemonStub(channel)
    assistant = rpc.AssistantStub(channel)
    book = a.book_id

    def hits(**req):
        def call():
            resp = search.Search(pb.SearchRequest(**req), timeout=TIMEOUT)
            return {"hits": len(resp.hits), "bytes": resp.ByteSize()}
        return call

    report("search: empty query", hits(query=""))
    report("search: blank query", hits(query=" \n\t "))
    report("search: 100 KB query", hits(query="senator " * 12_800))
    report("search: 3 MB query", hits(query="x" * (3 * 1024 * 1024)))
    report("search: k 0", hits(query="senator", k=0))
    report("search: k 1000000", hits(query="senator", k=1_000_000))
    report("search: k u32 max", hits(query="senator", k=U32_MAX, mode=pb.SEARCH_MODE_KEYWORD))
    report("search: unknown mode", hits(query="senator", mode=99))
    report("search: unknown book", hits(query="senator", book_ids=[book + 1000]))
    report("search: book id u64 max", hits(query="senator", book_ids=[U64_MAX]))
    report("search: 100000 book ids", hits(query="senator", book_ids=list(range(1, 100_001))))

    def book_call(id):
        def call():
            return {"bytes": library.GetBook(pb.GetBookRequest(id=id), timeout=TIMEOUT).ByteSize()}
        return call

    report("get book: unknown", book_call(book + 1000))
    report("get book: id 0", book_call(0))
    report("get book: id u64 max", book_call(U64_MAX))
    report("get book: id 2^40 + 1", book_call(2**40 + 1))

    def passage(**req):
        def call():
            p = library.GetPassage(pb.GetPassageRequest(**req), timeout=TIMEOUT)
            return {"chars": len(p.text), "bytes": p.ByteSize()}
        return call

    report("passage: unknown book", passage(book_id=book + 1000, offset=0))
    report("passage: book id u64 max", passage(book_id=U64_MAX, chapter=1))
    report("passage: chapter 0", passage(book_id=book, chapter=0))
    report("passage: chapter u32 max", passage(book_id=book, chapter=U32_MAX))
    report("passage: page 5 of a book without pages", passage(book_id=book, page=5))
    report("passage: page label of a book without pages", passage(book_id=book, page_label="xiv"))
    report("passage: offset past the end", passage(book_id=book, offset=10**9))
    report("passage: offset u64 max", passage(book_id=book, offset=U64_MAX))
    report("passage: max chars u32 max", passage(book_id=book, offset=0, max_chars=U32_MAX))
    report("passage: no location", passage(book_id=book))

    def remove(id):
        return lambda: {"removed": library.RemoveBook(pb.RemoveBookRequest(id=id), timeout=TIMEOUT).chunks_removed}

    report("remove book: unknown", remove(book + 1000))
    report("remove book: id u64 max", remove(U64_MAX))
    report("reindex: unknown book", lambda: {"queued": len(library.Reindex(
        pb.ReindexRequest(book_ids=[book + 1000]), timeout=TIMEOUT).queued)})
    report("reindex: book id u64 max", lambda: {"queued": len(library.Reindex(
        pb.ReindexRequest(book_ids=[U64_MAX]), timeout=TIMEOUT).queued)})

    def add(paths):
        def call():
            results = library.AddPaths(pb.AddPathsRequest(paths=paths), timeout=TIMEOUT).results
            return {"outcomes": [pb.AddOutcome.Name(r.outcome) for r in results],
                    "reasons": [r.reason for r in results]}
        return call

    report("add: missing file", add(["/nonexistent/book.txt"]))
    report("add: empty path", add([""]))
    report("add: NUL in path", add(["/tmp/a\0b.txt"]))
    report("add folder: missing", lambda: library.AddFolder(
        pb.AddFolderRequest(path="/nonexistent/folder"), timeout=TIMEOUT) and None)
    report("add folder: empty path", lambda: library.AddFolder(pb.AddFolderRequest(path=""), timeout=TIMEOUT) and None)
    report("remove folder: not followed", lambda: {"removed": library.RemoveFolder(
        pb.RemoveFolderRequest(path="/nonexistent/folder"), timeout=TIMEOUT).books_removed})
    report("use model: unknown", lambda: daemon.UseModel(pb.UseModelRequest(name="no-such-model"), timeout=TIMEOUT) and None)
    report("use model: empty name", lambda: daemon.UseModel(pb.UseModelRequest(name=""), timeout=TIMEOUT) and None)

    def stream(call):
        def run():
            events = [e.WhichOneof("kind") for e in call()]
            return {"events": events}
        return run

    report("summarize: unknown book", stream(lambda: assistant.Summarize(
        pb.SummarizeRequest(book_id=book + 1000, chapter=1), timeout=TIMEOUT)))
    report("summarize: book id u64 max", stream(lambda: assistant.Summarize(
        pb.SummarizeRequest(book_id=U64_MAX, chapter=1), timeout=TIMEOUT)))
    report("summarize: chapter 0", stream(lambda: assistant.Summarize(
        pb.SummarizeRequest(book_id=book, chapter=0), timeout=TIMEOUT)))
    report("explain: unknown book", stream(lambda: assistant.Explain(
        pb.ExplainRequest(book_id=book + 1000, at=0), timeout=TIMEOUT)))
    report("explain: offset past the end", stream(lambda: assistant.Explain(
        pb.ExplainRequest(book_id=book, at=U64_MAX), timeout=TIMEOUT)))
    report("ask: empty question", stream(lambda: assistant.Ask(pb.AskRequest(question=""), timeout=TIMEOUT)))
    report("ask: unknown book", stream(lambda: assistant.Ask(
        pb.AskRequest(question="How old must a senator be?", book_ids=[U64_MAX]), timeout=TIMEOUT)))

    # Over the daemon's 4 MiB request limit: refused before it is read.
    report("search: 5 MB message", hits(query="x" * (5 * 1024 * 1024)))
    report("add: 5 MB of paths", add(["/nonexistent/" + "p" * 1024] * 5 * 1024))

    # Bytes that are not a SearchRequest, through the raw method path.
    raw = channel.unary_unary("/mindory.v1.Search/Search",
                              request_serializer=lambda b: b,
                              response_deserializer=pb.SearchResponse.FromString)
    report("search: bytes that are not protobuf", lambda: raw(b"\xff\xff\xff\xff\xff", timeout=TIMEOUT) and None)
    # Field 1 (query) as a string that is not UTF-8.
    report("search: query that is not UTF-8", lambda: raw(b"\x0a\x02\xc3\x28", timeout=TIMEOUT) and None)
    unknown = channel.unary_unary("/mindory.v1.Search/Nope", request_serializer=lambda b: b,
                                  response_deserializer=lambda b: b)
    report("unknown method", lambda: unknown(b"", timeout=TIMEOUT) and None)
    channel.close()


if __name__ == "__main__":
    sys.exit(main())
