#!/usr/bin/env python3
"""Rebalance time of a consumer group, measured with real clients.

A 100-partition topic; 9 confluent-kafka consumers of one group subscribe
and are polled until they hold a stable assignment; then a 10th subscribes,
and the time from its subscribe() until the 10 hold a stable assignment in
which it has partitions is measured. The 10th is closed, the 9 are waited
for again, and the join is repeated (--repeats). Each row of the table is
one protocol and setting:

  classic         the classic protocol, client defaults (heartbeat.interval.ms
                  3000 in librdkafka)
  classic-hb500   the classic protocol, heartbeat.interval.ms=500
  consumer        KIP-848 (group.protocol=consumer); the broker decides the
                  heartbeat interval (give it with --consumer-heartbeat-ms)

Members that finished a rebalance together heartbeat together, so how
long a newcomer waits depends on where in their heartbeat period it
arrives: before each join the script waits a random part of the heartbeat
interval (uniform, seeded by --seed), so that the joins sample the whole
period instead of one phase of it.

A row needing KIP-848 runs only when the broker advertises
ConsumerGroupHeartbeat (ApiVersions key 68), and is reported as "not
supported by this broker" otherwise.

Stable means: every partition held by exactly one consumer (full,
non-overlapping), every consumer holding some, sizes differing by at most
one (what the range and uniform assignors give for one topic), unchanged
for --settle-s. The time of stability is when the last consumer's
assignment took that state (each consumer's own thread polls it and notes
when it changes, within --poll-ms), not when this script noticed. The
weaker condition (full, non-overlapping, the new consumer holds some) is
also recorded, as "first full": incremental protocols (KIP-848) pass it
before they finish moving partitions.

    bench-groups.py --bootstrap 127.0.0.1:9092 [--rows classic,classic-hb500,consumer]
                    [--repeats 5] [--consumer-heartbeat-ms 5000] [--json out.json]

Needs confluent-kafka (scripts/bench-groups.sh makes a venv with it).
"""

import argparse
import json
import random
import socket
import statistics
import struct
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import AdminClient, NewTopic

# librdkafka's default heartbeat.interval.ms (CONFIGURATION.md).
CLASSIC_HEARTBEAT_DEFAULT_MS = 3000
API_KEY_API_VERSIONS = 18
API_KEY_CONSUMER_GROUP_HEARTBEAT = 68


def row_settings(name, consumer_heartbeat_ms):
    """The consumer settings of a row, and the heartbeat interval in force."""
    if name == "classic":
        return {}, CLASSIC_HEARTBEAT_DEFAULT_MS, "librdkafka's default heartbeat.interval.ms"
    if name == "classic-hb500":
        return {"heartbeat.interval.ms": 500}, 500, "the client's heartbeat.interval.ms"
    if name == "consumer":
        source = "the broker's group.consumer.heartbeat.interval.ms"
        return {"group.protocol": "consumer"}, consumer_heartbeat_ms, source
    raise SystemExit(f"bench-groups: unknown row {name!r} (classic, classic-hb500, consumer)")


def broker_api_keys(bootstrap, timeout_s=10.0):
    """The API keys the broker advertises, from an ApiVersions v0 call."""
    host, port = bootstrap.rsplit(":", 1)
    client_id = b"bench-groups"
    body = struct.pack(">hhih", API_KEY_API_VERSIONS, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", read_exactly(sock, 4))[0]
        frame = read_exactly(sock, size)
    correlation_id, error_code, count = struct.unpack(">ihi", frame[:10])
    if correlation_id != 1 or error_code != 0:
        raise RuntimeError(f"ApiVersions answered correlation id {correlation_id}, error code {error_code}")
    return {struct.unpack(">hhh", frame[10 + 6 * i:16 + 6 * i])[0] for i in range(count)}


def read_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise RuntimeError("the broker closed the connection during ApiVersions")
        data += chunk
    return data


def ensure_topic(bootstrap, topic, partitions, timeout_s):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    try:
        futures[topic].result(timeout=timeout_s)
    except Exception as err:  # an existing topic is fine if it has the partitions
        if not (err.args and isinstance(err.args[0], KafkaError) and err.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata and metadata.error is None and len(metadata.partitions) == partitions and all(
            p.leader >= 0 for p in metadata.partitions.values()
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"topic {topic} has no leader for each of {partitions} partitions after {timeout_s} s")


class Member:
    """One consumer on its own thread: the thread creates, subscribes,
    polls and closes it, and publishes its assignment after each poll, so
    no consumer is used from two threads."""

    def __init__(self, name, config, topic, poll_s):
        self.name = name
        self.lock = threading.Lock()
        self.assignment = frozenset()
        self.changed_at = None
        self.subscribed_at = None
        self.error = None
        self._config = dict(config, **{"client.id": name, "error_cb": self._on_error})
        self._topic = topic
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _on_error(self, err):
        # Transport errors are retried by librdkafka; a fatal one ends the row.
        if err.fatal():
            self.error = f"{self.name}: {err}"

    def _run(self):
        try:
            consumer = Consumer(self._config)
            self.subscribed_at = time.monotonic()
            consumer.subscribe([self._topic])
            while not self._stop.is_set():
                message = consumer.poll(self._poll_s)
                if message is not None and message.error() and message.error().fatal():
                    self.error = f"{self.name}: {message.error()}"
                current = frozenset(tp.partition for tp in consumer.assignment())
                if current != self.assignment:
                    with self.lock:
                        self.assignment, self.changed_at = current, time.monotonic()
            consumer.close()
        except Exception as err:  # reported by the row, which then fails
            self.error = f"{self.name}: {err!r}"

    def snapshot(self):
        with self.lock:
            return self.assignment, self.changed_at

    def close(self, timeout_s):
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise RuntimeError(f"{self.name} did not close within {timeout_s} s")


def assignment_state(members, partitions, newcomer):
    """(full: every partition held once and the newcomer holds some;
    stable: full, every member holds some, sizes within one; when the
    state was reached)."""
    snapshots = [m.snapshot() for m in members]
    sets = [assignment for assignment, _ in snapshots]
    held = sum(len(s) for s in sets)
    union = frozenset().union(*sets)
    full = held == partitions and len(union) == partitions and all(0 <= p < partitions for p in union)
    if newcomer is not None:
        full = full and bool(newcomer.snapshot()[0])
    sizes = [len(s) for s in sets]
    stable = full and min(sizes) > 0 and max(sizes) - min(sizes) <= 1
    reached = max((changed for _, changed in snapshots if changed is not None), default=None)
    return full, stable, reached, tuple(sets)


def wait_stable(members, partitions, newcomer, settle_s, timeout_s):
    """Waits until the assignment is stable and has not changed for
    settle_s; returns (when it became stable, when it was first full)."""
    deadline = time.monotonic() + timeout_s
    first_full = None
    stable_since = None
    while time.monotonic() < deadline:
        for member in members:
            if member.error:
                raise RuntimeError(member.error)
        full, stable, reached, sets = assignment_state(members, partitions, newcomer)
        if full and first_full is None:
            first_full = reached
        if stable:
            if stable_since is None or stable_since[1] != sets:
                stable_since = (reached, sets, time.monotonic())
            elif time.monotonic() - stable_since[2] >= settle_s:
                return stable_since[0], first_full
        else:
            stable_since = None
        time.sleep(0.005)
    sizes = [len(m.snapshot()[0]) for m in members]
    raise RuntimeError(f"no stable assignment within {timeout_s} s (partitions held per member: {sizes})")


def run_row(args, name, supported_keys):
    settings, heartbeat_ms, heartbeat_source = row_settings(name, args.consumer_heartbeat_ms)
    result = {
        "row": name,
        "protocol": "consumer" if settings.get("group.protocol") == "consumer" else "classic",
        "settings": settings,
        "heartbeat_ms": heartbeat_ms,
        "heartbeat_source": heartbeat_source,
        "partitions": args.partitions,
        "members": args.members,
        "repeats": args.repeats,
        "supported": True,
        "join_s": [],
        "first_full_s": [],
        "phase_delays_s": [],
        "error": None,
    }
    if result["protocol"] == "consumer" and API_KEY_CONSUMER_GROUP_HEARTBEAT not in supported_keys:
        result["supported"] = False
        result["error"] = "not supported by this broker (no ConsumerGroupHeartbeat, ApiVersions key 68)"
        return result
    group = f"bench-groups-{name}-{uuid.uuid4().hex[:8]}"
    config = {
        "bootstrap.servers": args.bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **settings,
    }
    poll_s = args.poll_ms / 1000
    rng = random.Random(args.seed)
    members = []
    try:
        started = time.monotonic()
        members = [Member(f"{name}-{i}", config, args.topic, poll_s) for i in range(args.members - 1)]
        stable_at, _ = wait_stable(members, args.partitions, None, args.settle_s, args.timeout_s)
        result["formation_s"] = stable_at - started
        for repeat in range(args.repeats):
            delay_s = rng.uniform(0, heartbeat_ms / 1000)
            result["phase_delays_s"].append(delay_s)
            time.sleep(delay_s)
            newcomer = Member(f"{name}-new-{repeat}", config, args.topic, poll_s)
            stable_at, first_full = wait_stable(
                members + [newcomer], args.partitions, newcomer, args.settle_s, args.timeout_s
            )
            result["join_s"].append(stable_at - newcomer.subscribed_at)
            result["first_full_s"].append(first_full - newcomer.subscribed_at)
            log(f"{name}: join {repeat + 1}/{args.repeats}: stable after {result['join_s'][-1]:.3f} s "
                f"(first full after {result['first_full_s'][-1]:.3f} s)")
            newcomer.close(args.timeout_s)
            wait_stable(members, args.partitions, None, args.settle_s, args.timeout_s)
    except Exception as err:
        result["error"] = str(err)
        log(f"{name}: FAILED: {err}")
    finally:
        for member in members:
            try:
                member.close(args.timeout_s)
            except RuntimeError as err:
                log(str(err))
    for key in ("join_s", "first_full_s"):
        if result[key]:
            values = result[key]
            prefix = key[:-2]
            result[f"{prefix}_min_s"] = min(values)
            result[f"{prefix}_median_s"] = statistics.median(values)
            result[f"{prefix}_max_s"] = max(values)
    return result


def log(text):
    print(f"bench-groups: {text}", file=sys.stderr, flush=True)


def table(results):
    head = ["row", "settings", "join to stable: median (min-max) s", "first full median s", "heartbeat ms",
            "median / heartbeat"]
    rows = []
    for r in results:
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
        if not r["supported"]:
            rows.append([r["row"], settings, r["error"], "-", str(r["heartbeat_ms"]), "-"])
            continue
        if "join_median_s" not in r:
            rows.append([r["row"], settings, f"FAILED: {r['error']}", "-", str(r["heartbeat_ms"]), "-"])
            continue
        failed = f" FAILED after {len(r['join_s'])}: {r['error']}" if r["error"] else ""
        rows.append([
            r["row"],
            settings,
            f"{r['join_median_s']:.2f} ({r['join_min_s']:.2f}-{r['join_max_s']:.2f}), {len(r['join_s'])} joins{failed}",
            f"{r['first_full_median_s']:.2f}",
            str(r["heartbeat_ms"]),
            f"{r['join_median_s'] * 1000 / r['heartbeat_ms']:.2f}",
        ])
    widths = [max(len(row[i]) for row in [head] + rows) for i in range(len(head))]
    line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows]
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="bench-groups")
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--members", type=int, default=10, help="group size once the last member joined")
    parser.add_argument("--rows", default="classic,classic-hb500,consumer")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--consumer-heartbeat-ms", type=int, default=5000,
                        help="the broker's group.consumer.heartbeat.interval.ms (the KIP-848 row's reference)")
    parser.add_argument("--settle-s", type=float, default=1.0, help="how long a stable assignment must hold")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="each consumer's poll() timeout")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="longest wait for one stable assignment")
    parser.add_argument("--seed", type=int, default=1, help="seeds the random phase of each join")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.members < 2 or args.partitions < args.members or args.repeats < 1:
        parser.error("need at least 2 members, a partition per member and 1 repeat")
    supported = broker_api_keys(args.bootstrap)
    ensure_topic(args.bootstrap, args.topic, args.partitions, args.timeout_s)
    results = [run_row(args, name.strip(), supported) for name in args.rows.split(",") if name.strip()]
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
            out.write("\n")
    print(table(results))
    return 1 if any(r["supported"] and r["error"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
