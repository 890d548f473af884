"""One consumer-group member in a process of its own, for the group tests.

    python group_member.py CLIENT BOOTSTRAP GROUP TOPIC [options]

CLIENT is confluent-kafka, kafka-python or aiokafka. The member subscribes
to TOPIC in GROUP (session timeout 6 s, the broker's minimum, unless
--session-timeout-ms; heartbeats every 500 ms; no auto-commit; with
--group-protocol consumer, confluent-kafka's KIP-848 protocol instead,
where the broker sets the timeouts), and loops: poll, then commit the polled
records' next offsets synchronously (with --metadata as commit metadata),
then report them. A test can SIGKILL or SIGSTOP the process, which is the
point: a member that dies or freezes without leaving the group.

It reports on stdout, one JSON object per line (helpers.Member reads them):
  {"ev": "started"}                                  subscribed
  {"ev": "rebalance", "kind": "assign"|"revoke"|"lost", "partitions": [...]}
                                                     from the client's callbacks
  {"ev": "assignment", "partitions": [...]}          the assignment changed
  {"ev": "member", "member_id": "...", "generation": n}
                                                     kafka-python only: its
                                                     member id or generation
                                                     changed
  {"ev": "records", "records": [[p, offset, value], ...], "committed": {p: next}}
                                                     polled AND committed
  {"ev": "commit_failed", "error": "...", "records": [...]}
                                                     polled, commit refused:
                                                     not processed, will be
                                                     redelivered
  {"ev": "error", "error": "..."}                    a client error callback
  {"ev": "closed"}                                   after a clean close
A record counts as processed only once its offset is committed, like a sink
that stores results and offsets together: with that rule no record may be
reported twice, whatever the rebalances.

SIGUSR1 dumps every thread's Python stack to stderr; STELE_MEMBER_DEBUG=1 in
the environment turns on the client's debug log (stderr too).

stdin: the line "close" closes the consumer cleanly (LeaveGroup, unless
static) and exits 0. EOF on stdin does the same, so an orphan does not
linger. A member never runs longer than --max-seconds.
"""

import argparse
import asyncio
import faulthandler
import json
import logging
import os
import queue
import signal
import sys
import threading
import time


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def stdin_commands():
    q = queue.Queue()

    def read():
        for line in sys.stdin:
            q.put(line.strip())
        q.put("close")

    threading.Thread(target=read, daemon=True).start()
    return q


def wants_close(commands):
    try:
        return commands.get_nowait() == "close"
    except queue.Empty:
        return False


def as_records(items):
    """[(partition, offset, value bytes)] -> JSON-able, sorted."""
    return sorted([p, o, v.decode() if v is not None else None] for p, o, v in items)


def next_offsets(items):
    out = {}
    for p, o, _ in items:
        out[p] = max(out.get(p, 0), o + 1)
    return out


def run_confluent(args, commands, deadline):
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    conf = {
        "bootstrap.servers": args.bootstrap,
        "broker.address.family": "v4",
        "group.id": args.group,
        "client.id": args.name,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "error_cb": lambda err: emit(ev="error", error=str(err)),
    }
    if os.environ.get("STELE_MEMBER_DEBUG"):
        conf.update(debug="cgrp", logger=logging.getLogger("librdkafka"))
    if args.group_protocol == "consumer":
        # KIP-848: the broker owns timeouts and assignment; librdkafka
        # refuses session.timeout.ms, heartbeat.interval.ms and
        # partition.assignment.strategy with it.
        conf["group.protocol"] = "consumer"
        if args.assignor:
            conf["group.remote.assignor"] = args.assignor
    else:
        conf["session.timeout.ms"] = args.session_timeout_ms
        conf["heartbeat.interval.ms"] = 500
        if args.assignor:
            conf["partition.assignment.strategy"] = args.assignor
    if args.instance_id:
        conf["group.instance.id"] = args.instance_id
    c = Consumer(conf)

    def cb(kind):
        return lambda consumer, partitions: emit(
            ev="rebalance", kind=kind, partitions=sorted(tp.partition for tp in partitions)
        )

    c.subscribe([args.topic], on_assign=cb("assign"), on_revoke=cb("revoke"), on_lost=cb("lost"))
    emit(ev="started")
    current = None
    while time.monotonic() < deadline and not wants_close(commands):
        polled = []
        for msg in c.consume(num_messages=500, timeout=0.1):
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    emit(ev="error", error=str(msg.error()))
                continue
            polled.append((msg.partition(), msg.offset(), msg.value()))
        if polled:
            offsets = [TopicPartition(args.topic, p, o, args.metadata) for p, o in next_offsets(polled).items()]
            try:
                result = c.commit(offsets=offsets, asynchronous=False)
                failed = [str(tp.error) for tp in result if tp.error is not None]
            except KafkaException as exc:
                failed = [str(exc)]
            if failed:
                emit(ev="commit_failed", error="; ".join(failed), records=as_records(polled))
            else:
                emit(ev="records", records=as_records(polled), committed=next_offsets(polled))
        now = sorted(tp.partition for tp in c.assignment())
        if now != current:
            current = now
            emit(ev="assignment", partitions=now)
    c.close()
    emit(ev="closed")


def run_kafka_python(args, commands, deadline):
    from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata
    from kafka.errors import KafkaError

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit(ev="rebalance", kind="revoke", partitions=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            emit(ev="rebalance", kind="assign", partitions=sorted(tp.partition for tp in assigned))

        def on_partitions_lost(self, lost):
            emit(ev="rebalance", kind="lost", partitions=sorted(tp.partition for tp in lost))

    conf = dict(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        client_id=args.name,
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=500,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        request_timeout_ms=15000,
        reconnect_backoff_ms=50,
        reconnect_backoff_max_ms=500,
    )
    if args.assignor:
        from kafka.coordinator.assignors.range import RangePartitionAssignor
        from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

        by_name = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}
        conf["partition_assignment_strategy"] = [by_name[a] for a in args.assignor.split(",")]
    if args.instance_id:
        conf["group_instance_id"] = args.instance_id
    c = KafkaConsumer(**conf)
    c.subscribe([args.topic], listener=Listener())
    # kafka-python 3.0.12 joins before it has the subscribed topic's
    # metadata: its first assignment is empty and the metadata arriving
    # makes the leader rejoin. If poll()'s timeout ends while that rejoin
    # is in flight, the leader's own assignment marks its metadata as seen,
    # need_rejoin() turns False, the finished JoinGroup/SyncGroup is never
    # completed (no assignment, heartbeats stay off) and the broker rightly
    # evicts it after the session timeout. Fetching the metadata first
    # (a public call) avoids that rejoin.
    c.topics()
    emit(ev="started")
    current = membership = None
    while time.monotonic() < deadline and not wants_close(commands):
        try:
            batches = c.poll(timeout_ms=100)
        except KafkaError as exc:
            emit(ev="error", error=repr(exc))
            continue
        polled = [(tp.partition, r.offset, r.value) for tp, rs in batches.items() for r in rs]
        if polled:
            offsets = {}
            for tp, rs in batches.items():
                offsets[tp] = OffsetAndMetadata(rs[-1].offset + 1, args.metadata, -1)
            try:
                c.commit(offsets)
                emit(ev="records", records=as_records(polled), committed=next_offsets(polled))
            except KafkaError as exc:
                emit(ev="commit_failed", error=repr(exc), records=as_records(polled))
        now = sorted(tp.partition for tp in c.assignment())
        if now != current:
            current = now
            emit(ev="assignment", partitions=now)
        meta = c.group_metadata()
        if meta.member_id and (meta.member_id, meta.generation_id) != membership:
            membership = (meta.member_id, meta.generation_id)
            emit(ev="member", member_id=meta.member_id, generation=meta.generation_id)
    c.close()
    emit(ev="closed")


def run_aiokafka(args, commands, deadline):
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
    from aiokafka.errors import KafkaError

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit(ev="rebalance", kind="revoke", partitions=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            emit(ev="rebalance", kind="assign", partitions=sorted(tp.partition for tp in assigned))

    async def main():
        conf = dict(
            bootstrap_servers=args.bootstrap,
            group_id=args.group,
            client_id=args.name,
            session_timeout_ms=args.session_timeout_ms,
            heartbeat_interval_ms=500,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            request_timeout_ms=15000,
            retry_backoff_ms=50,
        )
        if args.assignor:
            from aiokafka.coordinator.assignors.range import RangePartitionAssignor
            from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

            by_name = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}
            conf["partition_assignment_strategy"] = tuple(by_name[a] for a in args.assignor.split(","))
        if args.instance_id:
            conf["group_instance_id"] = args.instance_id
        c = AIOKafkaConsumer(**conf)
        c.subscribe([args.topic], listener=Listener())
        await c.start()
        emit(ev="started")
        current = None
        try:
            while time.monotonic() < deadline and not wants_close(commands):
                try:
                    batches = await c.getmany(timeout_ms=100)
                except KafkaError as exc:
                    emit(ev="error", error=repr(exc))
                    await asyncio.sleep(0.1)
                    continue
                polled = [(tp.partition, r.offset, r.value) for tp, rs in batches.items() for r in rs]
                if polled:
                    offsets = {tp: (rs[-1].offset + 1, args.metadata) for tp, rs in batches.items()}
                    try:
                        await c.commit(offsets)
                        emit(ev="records", records=as_records(polled), committed=next_offsets(polled))
                    except KafkaError as exc:
                        emit(ev="commit_failed", error=repr(exc), records=as_records(polled))
                now = sorted(tp.partition for tp in c.assignment())
                if now != current:
                    current = now
                    emit(ev="assignment", partitions=now)
        finally:
            await c.stop()
        emit(ev="closed")

    asyncio.run(main())


CLIENTS = {"confluent-kafka": run_confluent, "kafka-python": run_kafka_python, "aiokafka": run_aiokafka}


def main():
    # SIGUSR1 prints every thread's stack to stderr: how to see where a
    # member that stopped reporting is stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if os.environ.get("STELE_MEMBER_DEBUG"):
        # The client's own debug log on stderr (librdkafka: debug=cgrp).
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("client", choices=sorted(CLIENTS))
    parser.add_argument("bootstrap")
    parser.add_argument("group")
    parser.add_argument("topic")
    parser.add_argument("--name", default="stele-py-member")
    parser.add_argument("--assignor", default=None, help="range, roundrobin or range,roundrobin")
    parser.add_argument("--instance-id", default=None)
    parser.add_argument("--metadata", default="")
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--group-protocol", choices=["classic", "consumer"], default="classic",
                        help="consumer: KIP-848 (confluent-kafka only)")
    parser.add_argument("--max-seconds", type=float, default=120)
    args = parser.parse_args()
    CLIENTS[args.client](args, stdin_commands(), time.monotonic() + args.max_seconds)


if __name__ == "__main__":
    main()
