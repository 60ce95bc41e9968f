#!/usr/bin/env python3
"""Discovering Mindory's gRPC API by server reflection alone: no .proto file
and no generated stubs. Checks the daemon's health, lists its services,
describes the Search RPC, then calls Daemon/Status and Search/Search with
message classes built from the descriptors the daemon sent.

Setup (once):
    python3 -m venv venv && venv/bin/pip install grpcio grpcio-reflection grpcio-health-checking

Run (the daemon must be running; the socket defaults to the CLI's):
    venv/bin/python examples/python/mindory_reflect.py [--socket PATH] [--search TEXT]

Like every grpcio client on a Unix socket, it sets `grpc.default_authority`
to `localhost` (see mindory_client.py). grpcio-reflection's descriptor
database speaks the v1alpha reflection protocol; the daemon serves v1 too.
"""

import argparse
import os
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


def default_socket():
    """The CLI's default: $MINDORY_SOCKET, else $XDG_RUNTIME_DIR/mindory/mindoryd.sock,
    else /tmp/mindory-UID/mindoryd.sock."""
    if os.environ.get("MINDORY_SOCKET"):
        return os.environ["MINDORY_SOCKET"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "mindory", "mindoryd.sock")
    return os.path.join(os.environ.get("TMPDIR", "/tmp"), f"mindory-{os.getuid()}", "mindoryd.sock")


class Reflected:
    """Calls unary RPCs by name, with request and response classes made from
    the descriptors the daemon serves."""

    def __init__(self, channel):
        self.channel = channel
        self.database = ProtoReflectionDescriptorDatabase(channel)
        self.pool = descriptor_pool.DescriptorPool(self.database)

    def services(self):
        return self.database.get_services()

    def method(self, service, method):
        return self.pool.FindServiceByName(service).FindMethodByName(method)

    def call(self, service, method, **fields):
        m = self.method(service, method)
        request = message_factory.GetMessageClass(m.input_type)
        response = message_factory.GetMessageClass(m.output_type)
        rpc = self.channel.unary_unary(f"/{service}/{method}",
                                       request_serializer=request.SerializeToString,
                                       response_deserializer=response.FromString)
        return rpc(request(**fields), timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--socket", default=default_socket())
    ap.add_argument("--search", default="How old must a senator be?")
    a = ap.parse_args()
    channel = grpc.insecure_channel(f"unix://{os.path.abspath(a.socket)}",
                                    options=[("grpc.default_authority", "localhost")])

    # The standard health check: "" is the whole daemon.
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    print(f"health: {health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)}")
    if health.status != health_pb2.HealthCheckResponse.SERVING:
        sys.exit("the daemon is not serving")

    api = Reflected(channel)
    print("services:")
    for name in sorted(api.services()):
        print(f"  {name}")
    m = api.method("mindory.v1.Search", "Search")
    print(f"rpc {m.name}({m.input_type.full_name}) returns ({m.output_type.full_name})")

    status = api.call("mindory.v1.Daemon", "Status")
    print(f"status: {status.books} books, {status.chunks} passages, protocol {status.protocol_version}")
    print(f"search: {a.search}")
    hits = api.call("mindory.v1.Search", "Search", query=a.search, k=3).hits
    for rank, h in enumerate(hits, 1):
        place = " — ".join(x for x in (h.title, h.location.chapter, h.location.page_label) if x)
        print(f"  {rank}. {place} (score {h.score:.3f})")
    if not hits:
        sys.exit("no hits")


if __name__ == "__main__":
    main()
