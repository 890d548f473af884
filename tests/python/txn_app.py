"""Transactional producers and isolated readers of each client behind one
small interface, and a consume-transform-produce application built on
them, for test_transactions.py.

The interface (make_producer, make_reader) calls each client's own API:
confluent-kafka's Producer (init_transactions, begin_transaction,
send_offsets_to_transaction with the consumer's group metadata,
commit_transaction, abort_transaction) and Consumer (isolation.level,
committed, get_watermark_offsets); kafka-python's KafkaProducer
(transactional_id) and KafkaConsumer (isolation_level, group_metadata,
committed, end_offsets); aiokafka's AIOKafkaProducer (transactional_id,
`async with producer.transaction()`, send_offsets_to_transaction with the
group id) and AIOKafkaConsumer, run on an event loop thread of their own
so that the tests and the application can call them like the others.

As a program it is one instance of the exactly-once application:

    python txn_app.py CLIENT BOOTSTRAP GROUP TRANSACTIONAL_ID INPUT OUTPUT PARTITIONS
                      [--transaction-timeout-ms MS] [--max-seconds S]

It initializes its transactional producer first (which fences a previous
instance with the same transactional id and aborts its open transaction,
so that the pending offsets of that transaction are gone before the
consumer asks for its position), then assigns itself partitions
0..PARTITIONS-1 of INPUT in GROUP (read_committed, no auto commit: it
starts at the group's committed offsets) and reports {"ev": "ready"}.
Commands, one per line on stdin:

  txn N commit|abort|open   begin a transaction, take up to N input records
                            (fewer when the input runs dry), produce
                            b"out:" + value of each to the same partition of
                            OUTPUT, flush, send the consumer's next offsets
                            to the transaction, then commit it, abort it
                            (and seek back to the first offset it took on
                            each partition) or leave it open
  commit                    commit the transaction left open
  run TARGET N              transactions of up to N records, each committed,
                            until the committed offsets reach TARGET (JSON,
                            {"partition": offset}); then reports {"ev":
                            "done", "offsets": {"p": next offset}}
  close                     close both clients, exit 0 (also on EOF)

Each transaction is reported once it ended (or was left open), as
{"ev": "committed"|"aborted"|"open", "records": [[p, offset, value], ...],
"offsets": {"p": next offset}}. An exception reports {"ev": "error",
"error": ..., "fenced": bool} and exits 3. A test SIGKILLs the process,
which is the point: an instance that vanishes mid-transaction.
"""

import argparse
import asyncio
import faulthandler
import json
import os
import signal
import sys
import threading
import time
import uuid

CLIENTS = ["confluent-kafka", "kafka-python", "aiokafka"]
TIMEOUT = 30
TIMEOUT_MS = TIMEOUT * 1000


def make_producer(client, bootstrap, transactional_id=None, transaction_timeout_ms=None):
    """A producer of CLIENT: transactional with transactional_id (call
    init() first), else a plain one (acks=all)."""
    cls = {"confluent-kafka": ConfluentProducer, "kafka-python": KafkaPythonProducer, "aiokafka": AioProducer}[client]
    return cls(bootstrap, transactional_id, transaction_timeout_ms)


def make_reader(client, bootstrap, isolation, group=None):
    """A consumer of CLIENT at isolation ("read_committed" or
    "read_uncommitted"), in GROUP (for its committed offsets; it never
    subscribes) or without one."""
    cls = {"confluent-kafka": ConfluentReader, "kafka-python": KafkaPythonReader, "aiokafka": AioReader}[client]
    return cls(bootstrap, isolation, group)


def is_fenced(client, exc):
    """Whether exc is CLIENT's "another producer with this transactional
    id took over" error."""
    if client == "confluent-kafka":
        from confluent_kafka import KafkaError, KafkaException

        return isinstance(exc, KafkaException) and exc.args[0].code() == KafkaError._FENCED and exc.args[0].fatal()
    if client == "kafka-python":
        from kafka.errors import ProducerFencedError

        return isinstance(exc, ProducerFencedError)
    from aiokafka.errors import ProducerFenced

    return isinstance(exc, ProducerFenced)


# --- confluent-kafka ----------------------------------------------------------


class ConfluentProducer:
    def __init__(self, bootstrap, transactional_id, transaction_timeout_ms):
        from confluent_kafka import Producer

        conf = {
            "bootstrap.servers": bootstrap,
            "broker.address.family": "v4",
            "linger.ms": 5,
            "enable.idempotence": True,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            # librdkafka >= 2.10 re-bootstraps when every broker is down
            # (as the only one is across a kill -9), decommissioning the
            # brokers it learned; the group coordinator it cached stays
            # pointed at the decommissioned handle, and the next
            # send_offsets_to_transaction hangs on it (librdkafka #5511).
            # A client bug, the same against Kafka: the test's producers
            # ride through the restart without re-bootstrapping.
            "metadata.recovery.strategy": "none",
        }
        if transactional_id:
            conf["transactional.id"] = transactional_id
        if transaction_timeout_ms:
            conf["transaction.timeout.ms"] = transaction_timeout_ms
        if os.environ.get("STELE_MEMBER_DEBUG"):
            conf["debug"] = "eos,protocol,broker,msg"
        self.p = Producer(conf)
        self.errors = []

    def init(self):
        self.p.init_transactions(TIMEOUT)

    def begin(self):
        self.p.begin_transaction()

    def send(self, topic, partition, value):
        def on_delivery(err, _msg):
            if err is not None:
                self.errors.append(err)

        self.p.produce(topic, value=value, partition=partition, on_delivery=on_delivery)
        self.p.poll(0)

    def flush(self):
        assert self.p.flush(TIMEOUT) == 0, "records still queued after flush"
        errors, self.errors = self.errors, []
        if errors:
            raise RuntimeError(f"delivery errors: {errors}")

    def send_offsets(self, reader, topic, offsets):
        from confluent_kafka import TopicPartition

        tps = [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())]
        self.p.send_offsets_to_transaction(tps, reader.c.consumer_group_metadata(), TIMEOUT)

    def commit(self):
        self.p.commit_transaction(TIMEOUT)

    def abort(self):
        self.p.abort_transaction(TIMEOUT)

    def transaction(self, topic, values, commit):
        """One whole transaction: values {partition: [value]}, then commit
        or abort."""
        self.begin()
        for p, vs in sorted(values.items()):
            for v in vs:
                self.send(topic, p, v)
        self.flush()
        self.commit() if commit else self.abort()

    def close(self):
        self.p.flush(5)


class ConfluentReader:
    def __init__(self, bootstrap, isolation, group):
        from confluent_kafka import Consumer

        self.c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "broker.address.family": "v4",
                # Required by the client; without a group of the test's, a
                # name no other test uses, never committed to.
                "group.id": group or f"stele-py-txn-reader-{uuid.uuid4().hex[:8]}",
                "isolation.level": isolation,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 100,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 500,
            }
        )

    def assign(self, topic, partitions, from_beginning=False):
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_STORED, TopicPartition

        start = OFFSET_BEGINNING if from_beginning else OFFSET_STORED
        self.c.assign([TopicPartition(topic, p, start) for p in partitions])

    def poll(self, max_records, timeout):
        out = []
        for msg in self.c.consume(num_messages=max_records, timeout=timeout):
            if msg.error():
                raise RuntimeError(f"consume error: {msg.error()}")
            out.append((msg.partition(), msg.offset(), msg.value()))
        return out

    def seek(self, topic, partition, offset):
        from confluent_kafka import TopicPartition

        self.c.seek(TopicPartition(topic, partition, offset))

    def committed(self, topic, partitions, timeout=TIMEOUT):
        from confluent_kafka import TopicPartition

        got = self.c.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in got}

    def end_offsets(self, topic, partitions):
        from confluent_kafka import TopicPartition

        return {
            p: self.c.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT, cached=False)[1]
            for p in partitions
        }

    def commit(self, topic, offsets):
        from confluent_kafka import TopicPartition

        self.c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)

    def close(self):
        self.c.close()


# --- kafka-python ---------------------------------------------------------------


class KafkaPythonProducer:
    def __init__(self, bootstrap, transactional_id, transaction_timeout_ms):
        from kafka import KafkaProducer

        conf = dict(bootstrap_servers=bootstrap, linger_ms=5, acks="all", request_timeout_ms=TIMEOUT_MS)
        if transactional_id:
            conf["transactional_id"] = transactional_id
        if transaction_timeout_ms:
            conf["transaction_timeout_ms"] = transaction_timeout_ms
        self.p = KafkaProducer(**conf)
        self.futures = []

    def init(self):
        self.p.init_transactions()

    def begin(self):
        self.p.begin_transaction()

    def send(self, topic, partition, value):
        self.futures.append(self.p.send(topic, value=value, partition=partition))

    def flush(self):
        self.p.flush(timeout=TIMEOUT)
        futures, self.futures = self.futures, []
        for f in futures:
            f.get(timeout=TIMEOUT)

    def send_offsets(self, reader, topic, offsets):
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        self.p.send_offsets_to_transaction(
            {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()},
            reader.c.group_metadata(),
        )

    def commit(self):
        self.p.commit_transaction()

    def abort(self):
        self.p.abort_transaction()

    def transaction(self, topic, values, commit):
        self.begin()
        for p, vs in sorted(values.items()):
            for v in vs:
                self.send(topic, p, v)
        self.flush()
        self.commit() if commit else self.abort()

    def close(self):
        self.p.close(timeout=5)


class KafkaPythonReader:
    def __init__(self, bootstrap, isolation, group):
        from kafka import KafkaConsumer

        self.c = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            isolation_level=isolation,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            request_timeout_ms=TIMEOUT_MS,
        )

    def assign(self, topic, partitions, from_beginning=False):
        from kafka import TopicPartition

        tps = [TopicPartition(topic, p) for p in partitions]
        self.c.assign(tps)
        if from_beginning:
            self.c.seek_to_beginning(*tps)

    def poll(self, max_records, timeout):
        out = []
        for batch in self.c.poll(timeout_ms=int(timeout * 1000), max_records=max_records).values():
            out.extend((r.partition, r.offset, r.value) for r in batch)
        return out

    def seek(self, topic, partition, offset):
        from kafka import TopicPartition

        self.c.seek(TopicPartition(topic, partition), offset)

    def committed(self, topic, partitions, timeout=TIMEOUT):
        from kafka import TopicPartition

        return {p: self.c.committed(TopicPartition(topic, p), timeout_ms=int(timeout * 1000)) for p in partitions}

    def end_offsets(self, topic, partitions):
        from kafka import TopicPartition

        got = self.c.end_offsets([TopicPartition(topic, p) for p in partitions], timeout_ms=TIMEOUT_MS)
        return {tp.partition: o for tp, o in got.items()}

    def commit(self, topic, offsets):
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        self.c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})

    def close(self):
        self.c.close(autocommit=False)


# --- aiokafka -------------------------------------------------------------------

_loop = None
_loop_lock = threading.Lock()


def _run(coro, timeout=TIMEOUT + 15):
    """Runs coro on the process's aiokafka event loop thread; returns its
    result or raises its exception."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="aiokafka-loop", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coro, _loop).result(timeout)


def _call(fn, *args):
    """Calls a plain method of an aiokafka object on its loop (aiokafka
    wants the loop running even there)."""

    async def call():
        return fn(*args)

    return _run(call())


class _Abort(Exception):
    """Raised inside `async with producer.transaction()` to abort it."""


class AioProducer:
    def __init__(self, bootstrap, transactional_id, transaction_timeout_ms):
        from aiokafka import AIOKafkaProducer

        conf = dict(bootstrap_servers=bootstrap, linger_ms=5, acks="all", request_timeout_ms=TIMEOUT_MS)
        if transactional_id:
            conf["transactional_id"] = transactional_id
        if transaction_timeout_ms:
            conf["transaction_timeout_ms"] = transaction_timeout_ms
        self.transactional = bool(transactional_id)
        self.futures = []

        async def create():
            p = AIOKafkaProducer(**conf)
            if not self.transactional:
                await p.start()
            return p

        self.p = _run(create())

    def init(self):
        # start() sends InitProducerId for a transactional producer.
        _run(self.p.start())

    def begin(self):
        _run(self.p.begin_transaction())

    def send(self, topic, partition, value):
        self.futures.append(_run(self.p.send(topic, value=value, partition=partition)))

    def flush(self):
        async def flush(futures):
            await self.p.flush()
            for f in futures:
                await f

        futures, self.futures = self.futures, []
        _run(flush(futures))

    def send_offsets(self, reader, topic, offsets):
        from aiokafka import TopicPartition

        tps = {TopicPartition(topic, p): o for p, o in offsets.items()}
        _run(self.p.send_offsets_to_transaction(tps, reader.group))

    def commit(self):
        _run(self.p.commit_transaction())

    def abort(self):
        _run(self.p.abort_transaction())

    def transaction(self, topic, values, commit):
        """`async with producer.transaction()`: commits when the block ends,
        aborts when it raises."""

        async def run():
            async with self.p.transaction():
                futures = []
                for p, vs in sorted(values.items()):
                    for v in vs:
                        futures.append(await self.p.send(topic, value=v, partition=p))
                await self.p.flush()
                for f in futures:
                    await f
                if not commit:
                    raise _Abort()

        try:
            _run(run())
        except _Abort:
            pass

    def close(self):
        _run(self.p.stop())


class AioReader:
    def __init__(self, bootstrap, isolation, group):
        from aiokafka import AIOKafkaConsumer

        self.group = group

        async def create():
            c = AIOKafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group,
                isolation_level=isolation,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=100,
                request_timeout_ms=TIMEOUT_MS,
            )
            await c.start()
            return c

        self.c = _run(create())

    def assign(self, topic, partitions, from_beginning=False):
        from aiokafka import TopicPartition

        tps = [TopicPartition(topic, p) for p in partitions]
        _call(self.c.assign, tps)
        if from_beginning:
            _run(self.c.seek_to_beginning(*tps))

    def poll(self, max_records, timeout):
        got = _run(self.c.getmany(timeout_ms=int(timeout * 1000), max_records=max_records))
        return [(r.partition, r.offset, r.value) for batch in got.values() for r in batch]

    def seek(self, topic, partition, offset):
        from aiokafka import TopicPartition

        _call(self.c.seek, TopicPartition(topic, partition), offset)

    def committed(self, topic, partitions, timeout=TIMEOUT):
        from aiokafka import TopicPartition

        async def committed():
            return {p: await self.c.committed(TopicPartition(topic, p)) for p in partitions}

        return _run(asyncio.wait_for(committed(), timeout))

    def end_offsets(self, topic, partitions):
        from aiokafka import TopicPartition

        got = _run(self.c.end_offsets([TopicPartition(topic, p) for p in partitions]))
        return {tp.partition: o for tp, o in got.items()}

    def commit(self, topic, offsets):
        from aiokafka import TopicPartition

        _run(self.c.commit({TopicPartition(topic, p): o for p, o in offsets.items()}))

    def close(self):
        _run(self.c.stop())


# --- the application ------------------------------------------------------------


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class App:
    def __init__(self, args):
        self.args = args
        self.producer = make_producer(args.client, args.bootstrap, args.transactional_id, args.transaction_timeout_ms)
        self.producer.init()
        self.reader = make_reader(args.client, args.bootstrap, "read_committed", args.group)
        self.reader.assign(args.input, range(args.partitions))
        self.open = None  # (records, offsets) of the transaction left open
        # partition -> next offset: the group's at the start, then as this
        # instance committed.
        start = self.reader.committed(args.input, range(args.partitions))
        self.committed = {p: o or 0 for p, o in start.items()}

    def transform(self, count):
        """Begins a transaction and puts up to count input records in it,
        transformed, with the consumer's next offsets."""
        self.producer.begin()
        taken = []
        deadline = time.monotonic() + TIMEOUT
        while len(taken) < count:
            batch = self.reader.poll(count - len(taken), 0.5)
            if not batch:
                if taken or time.monotonic() > deadline:
                    break
                continue
            for p, _, value in batch:
                self.producer.send(self.args.output, p, b"out:" + value)
            taken.extend(batch)
        self.producer.flush()
        offsets = {}
        for p, o, _ in taken:
            offsets[p] = max(offsets.get(p, 0), o + 1)
        if offsets:
            self.producer.send_offsets(self.reader, self.args.input, offsets)
        return taken, offsets

    def report(self, ev, records, offsets):
        emit(
            ev=ev,
            records=sorted([p, o, v.decode()] for p, o, v in records),
            offsets={str(p): o for p, o in offsets.items()},
        )

    def txn(self, count, mode):
        records, offsets = self.transform(count)
        if mode == "commit":
            self.producer.commit()
            self.committed.update(offsets)
            self.report("committed", records, offsets)
        elif mode == "abort":
            self.producer.abort()
            first = {}
            for p, o, _ in records:
                first[p] = min(first.get(p, o), o)
            for p, o in first.items():
                self.reader.seek(self.args.input, p, o)
            self.report("aborted", records, offsets)
        else:
            self.open = (records, offsets)
            self.report("open", records, offsets)

    def commit_open(self):
        records, offsets = self.open
        self.open = None
        self.producer.commit()
        self.committed.update(offsets)
        self.report("committed", records, offsets)

    def run(self, target, count):
        deadline = time.monotonic() + 120
        while any(self.committed.get(p, 0) < o for p, o in target.items()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"committed {self.committed}, short of {target} after 120 s")
            self.txn(count, "commit")
        emit(ev="done", offsets={str(p): o for p, o in self.committed.items()})

    def close(self):
        self.reader.close()
        self.producer.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("bootstrap")
    parser.add_argument("group")
    parser.add_argument("transactional_id")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("partitions", type=int)
    parser.add_argument("--transaction-timeout-ms", type=int, default=None)
    parser.add_argument("--max-seconds", type=int, default=300)
    args = parser.parse_args()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # An orphan must not linger.
    signal.signal(signal.SIGALRM, lambda *_: os_exit(4))
    signal.alarm(args.max_seconds)
    try:
        app = App(args)
        emit(ev="ready")
        for line in sys.stdin:
            cmd = line.split()
            if not cmd:
                continue
            if cmd[0] == "txn":
                app.txn(int(cmd[1]), cmd[2])
            elif cmd[0] == "commit":
                app.commit_open()
            elif cmd[0] == "run":
                app.run({int(p): o for p, o in json.loads(cmd[1]).items()}, int(cmd[2]))
            elif cmd[0] == "close":
                break
            else:
                raise ValueError(f"unknown command {line!r}")
        app.close()
        emit(ev="closed")
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails
        import traceback

        traceback.print_exc()
        emit(ev="error", error=repr(exc), fenced=is_fenced(args.client, exc))
        sys.stdout.flush()
        os_exit(3)
    os_exit(0)


def os_exit(code):
    # Skip interpreter teardown: client threads (librdkafka, kafka-python's
    # sender, the aiokafka loop) must not delay or hang the exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
