"""A client that is not Rust: Python grpcio with stubs generated from proto/ by grpcio-tools.

Usage: grpc_client.py HOST:PORT

Against a server on the manual clock with an empty data directory, it creates the
workload schema and the recent_buyers segment, subscribes (snapshot), ingests a purchase
as JSON rows, receives the `entered` change, advances the clock 3 hours and receives the
`exited` change at the exact instant. Prints one line per step; exits non-zero on any
mismatch. Run by tests/e2e/grpc.rs with the interpreter from scripts/setup-python.sh.
"""

import json
import os
import queue
import sys
import tempfile
import threading

import grpc
from grpc_tools import protoc

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PROTO_ROOT = os.path.join(ROOT, "proto")
PROTO = "segstream/v1/segstream.proto"


def generate_stubs():
    """Generates the messages and the service stub into a temporary directory."""
    out = tempfile.mkdtemp(prefix="segstream-py-")
    status = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        PROTO,
    ])
    if status != 0:
        sys.exit(f"protoc failed with status {status}")
    sys.path.insert(0, out)
    from segstream.v1 import segstream_pb2, segstream_pb2_grpc  # noqa: E402

    return segstream_pb2, segstream_pb2_grpc


def nanos(text):
    """'2026-04-01 10:00:00' (UTC) as nanoseconds since the epoch."""
    from datetime import datetime, timezone

    t = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    return int(t.timestamp()) * 1_000_000_000


def main():
    addr = sys.argv[1]
    pb, rpc = generate_stubs()
    channel = grpc.insecure_channel(addr)
    grpc.channel_ready_future(channel).result(timeout=10)
    stub = rpc.SegstreamStub(channel)

    with open(os.path.join(ROOT, "sql-examples/workload/schema.sql")) as f:
        schema = f.read()
    with open(os.path.join(ROOT, "sql-examples/recent_buyers/segment.sql")) as f:
        segment = f.read()
    stub.Execute(pb.ExecuteRequest(sql=schema))
    stub.Execute(pb.ExecuteRequest(sql=segment))
    clock = stub.AdvanceClock(pb.AdvanceClockRequest(to_unix_nanos=nanos("2026-04-01 10:00:00")))
    print("created the segment; clock at", clock.clock_unix_nanos)

    # Bad SQL is INVALID_ARGUMENT, with the position in the message.
    try:
        stub.Execute(pb.ExecuteRequest(sql="SELECT user_id FROM eventz"))
        sys.exit("bad SQL was accepted")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert "eventz" in error.details(), error.details()
        print("bad SQL refused:", error.details().splitlines()[0])

    events = queue.Queue()
    request = pb.SubscribeRequest(segments=["recent_buyers"], snapshot=pb.Snapshot(), progress_interval_ms=100)
    subscription = stub.Subscribe(request)

    def read():
        try:
            for message in subscription:
                events.put(message)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                events.put(e)

    threading.Thread(target=read, daemon=True).start()

    def next_event(kind):
        while True:
            message = events.get(timeout=10)
            if isinstance(message, Exception):
                raise message
            if message.WhichOneof("event") == kind:
                return getattr(message, kind)

    end = next_event("snapshot_end")
    assert dict(end.seq) == {"recent_buyers": 0}, end
    print("snapshot: empty, at seq 0")

    row = {"event_id": "py1", "user_id": "pat", "event_type": "purchase", "amount": 42.0,
           "ts": "2026-04-01 10:00:00"}
    bad = {"event_id": "py2", "event_type": "purchase", "ts": "2026-04-01 10:00:00"}
    response = stub.Ingest(pb.IngestRequest(
        relation="events",
        json=pb.JsonRows(rows=[json.dumps(row), json.dumps(bad)]),
        idempotency_key="python-1",
    ))
    assert response.accepted == 1, response
    assert [r.index for r in response.rejected] == [1], response
    print("ingested 1 row; row 1 rejected:", response.rejected[0].reason)

    change = next_event("change")
    assert (change.segment, change.seq, change.key, change.kind) == ("recent_buyers", 1, "pat", pb.ENTERED), change
    assert change.at_unix_nanos == nanos("2026-04-01 10:00:00"), change
    print("received: recent_buyers #1 entered pat")

    stub.AdvanceClock(pb.AdvanceClockRequest(by_nanos=4 * 3600 * 1_000_000_000))
    change = next_event("change")
    assert (change.seq, change.key, change.kind) == (2, "pat", pb.EXITED), change
    assert change.at_unix_nanos == nanos("2026-04-01 13:00:00"), change
    print("received: recent_buyers #2 exited pat at 13:00:00 exactly")

    count = stub.CountMembers(pb.CountMembersRequest(segment="recent_buyers"))
    assert count.count == 0, count
    subscription.cancel()
    print("ok")


if __name__ == "__main__":
    main()
