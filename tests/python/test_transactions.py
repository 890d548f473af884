"""Transactions (KIP-98, KIP-447 offsets, KIP-890 part 1 verification)
with each client's own transactional producer and isolated consumers:
confluent-kafka (Producer with transactional.id, Consumer isolation.level),
kafka-python (KafkaProducer(transactional_id=...), KafkaConsumer
(isolation_level=...)) and aiokafka (AIOKafkaProducer(transactional_id=...)
with `async with producer.transaction()`, AIOKafkaConsumer). The clients
sit behind txn_app.py's small interface, which calls each one's own API.

Kafka answers EndTxn once the outcome is decided, before the markers are
written: what a commit releases is waited for with a deadline, never
assumed to be there at once.
"""

import collections
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import test_confluent_kafka as ck
from helpers import wait_until
from txn_app import CLIENTS, is_fenced, make_producer, make_reader

TXN_APP = Path(__file__).with_name("txn_app.py")
TIMEOUT = 30
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def closing():
    """Registers clients to close at the end of the test, whatever happens."""
    clients = []
    yield lambda c: clients.append(c) or c
    for c in reversed(clients):
        try:
            c.close()
        except Exception:  # noqa: BLE001 - a fenced producer may refuse
            pass


def values(tag, partitions, count):
    """{partition: [b"tag-p-i", ...]}"""
    return {p: [f"{tag}-{p}-{i}".encode() for i in range(count)] for p in range(partitions)}


def read(reader, count, timeout=TIMEOUT):
    """Polls until count records arrived; returns (partition, offset, value)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        assert time.monotonic() < deadline, f"read {len(out)} of {count} records in {timeout} s: {out}"
        out.extend(reader.poll(count - len(out), 0.2))
    return out


def drain(reader, quiet=1.0):
    """Whatever arrives within quiet seconds."""
    out = []
    deadline = time.monotonic() + quiet
    while time.monotonic() < deadline:
        out.extend(reader.poll(100, 0.1))
    return out


def by_partition(recs):
    out = collections.defaultdict(list)
    for p, o, v in recs:
        out[p].append((o, v))
    return dict(out)


def reader(closing, client, broker, isolation, group=None, assign=None):
    r = closing(make_reader(client, broker.bootstrap, isolation, group))
    if assign is not None:
        topic, partitions = assign
        r.assign(topic, partitions, from_beginning=True)
    return r


def transactional(closing, client, broker, transactional_id, **kw):
    p = closing(make_producer(client, broker.bootstrap, transactional_id, **kw))
    p.init()
    return p


def plain_send(closing, client, broker, topic, values_by_partition):
    p = closing(make_producer(client, broker.bootstrap))
    for part, vs in sorted(values_by_partition.items()):
        for v in vs:
            p.send(topic, part, v)
    p.flush()


# --- 1. commit and abort -------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_committed_records_are_read_and_aborted_ones_skipped(txn_broker, topic, closing, client):
    """Three transactions over a 3-partition topic, three records per
    partition each: committed, aborted (aiokafka: an exception in `async
    with producer.transaction()`), committed. Every transaction's records
    are contiguous and each ends in a marker taking an offset, so the
    offsets are exact: a at 0-2, b at 4-6, c at 8-10, markers at 3, 7, 11.
    A read_committed consumer gets a and c only (the client drops b with
    the aborted-transaction list Fetch answers), a read_uncommitted one all
    three; both end offsets are 12 (the LSO is the high watermark once the
    last marker is durable)."""
    broker = txn_broker
    ck.create_topic(broker, topic, 3)
    producer = transactional(closing, client, broker, f"{topic}-txn")
    a, b, c = (values(tag, 3, 3) for tag in "abc")
    producer.transaction(topic, a, commit=True)
    producer.transaction(topic, b, commit=False)
    producer.transaction(topic, c, commit=True)

    committed = reader(closing, client, broker, "read_committed", assign=(topic, range(3)))
    got = by_partition(read(committed, 18))
    for p in range(3):
        want = [(i, a[p][i]) for i in range(3)] + [(8 + i, c[p][i]) for i in range(3)]
        assert got[p] == want, f"read_committed, partition {p}"
    assert drain(committed) == [], "read_committed: nothing but a and c"
    assert committed.end_offsets(topic, range(3)) == {0: 12, 1: 12, 2: 12}

    uncommitted = reader(closing, client, broker, "read_uncommitted", assign=(topic, range(3)))
    got = by_partition(read(uncommitted, 27))
    for p in range(3):
        want = [(i, a[p][i]) for i in range(3)] + [(4 + i, b[p][i]) for i in range(3)]
        want += [(8 + i, c[p][i]) for i in range(3)]
        assert got[p] == want, f"read_uncommitted, partition {p}"
    assert drain(uncommitted) == []
    assert uncommitted.end_offsets(topic, range(3)) == {0: 12, 1: 12, 2: 12}


# --- 2. an open transaction and the LSO ------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_an_open_transaction_holds_read_committed_consumers_at_the_lso(txn_broker, topic, closing, client):
    """On a 2-partition topic: a plain record at offset 0 of partition 0,
    then an open transaction's records (flushed and acknowledged, not
    committed) at 1-3 of partition 0 and 0-2 of partition 1, then another
    plain record at 4 of partition 0. The last stable offset is the open
    transaction's first offset: a read_committed consumer gets the first
    plain record only (not even the plain one after the transaction), and
    its end offsets are the LSOs {0: 1, 1: 0}, while read_uncommitted ones
    are the high watermarks {0: 5, 1: 3} and a read_uncommitted consumer
    gets all 8. The commit releases the rest to the waiting consumer, in
    offset order; the markers (offset 5 and 3) move both end offsets to 6
    and 4."""
    broker = txn_broker
    ck.create_topic(broker, topic, 2)
    plain_send(closing, client, broker, topic, {0: [b"before"]})
    producer = transactional(closing, client, broker, f"{topic}-txn")
    producer.begin()
    txn = values("open", 2, 3)
    for p, vs in sorted(txn.items()):
        for v in vs:
            producer.send(topic, p, v)
    producer.flush()
    plain_send(closing, client, broker, topic, {0: [b"after"]})

    committed = reader(closing, client, broker, "read_committed", assign=(topic, range(2)))
    assert read(committed, 1) == [(0, 0, b"before")]
    assert drain(committed) == [], "nothing at or past the LSO"
    assert committed.end_offsets(topic, range(2)) == {0: 1, 1: 0}, "read_committed end offsets are the LSOs"
    uncommitted = reader(closing, client, broker, "read_uncommitted", assign=(topic, range(2)))
    assert uncommitted.end_offsets(topic, range(2)) == {0: 5, 1: 3}
    assert by_partition(read(uncommitted, 8)) == {
        0: [(0, b"before"), (1, txn[0][0]), (2, txn[0][1]), (3, txn[0][2]), (4, b"after")],
        1: [(0, txn[1][0]), (1, txn[1][1]), (2, txn[1][2])],
    }

    producer.commit()
    assert by_partition(read(committed, 7)) == {
        0: [(1, txn[0][0]), (2, txn[0][1]), (3, txn[0][2]), (4, b"after")],
        1: [(0, txn[1][0]), (1, txn[1][1]), (2, txn[1][2])],
    }
    assert committed.end_offsets(topic, range(2)) == {0: 6, 1: 4}
    assert uncommitted.end_offsets(topic, range(2)) == {0: 6, 1: 4}


# --- 3. zombie fencing --------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_a_second_instance_fences_the_first_and_aborts_its_transaction(txn_broker, topic, closing, client):
    """A producer flushes 4 records to each of 2 partitions in an open
    transaction; a second instance with the same transactional id
    initializes (InitProducerId bumps the epoch and aborts the open
    transaction first). The first one's commit then fails with the
    client's fenced error (confluent-kafka: fatal _FENCED; kafka-python:
    ProducerFencedError; aiokafka: ProducerFenced), and the second one's
    transaction commits. read_committed: the second one's records only, at
    5-8 after the zombie's 0-3 and the abort marker at 4;
    read_uncommitted: both."""
    broker = txn_broker
    ck.create_topic(broker, topic, 2)
    zombie = transactional(closing, client, broker, f"{topic}-txn")
    zombie.begin()
    z = values("zombie", 2, 4)
    for p, vs in sorted(z.items()):
        for v in vs:
            zombie.send(topic, p, v)
    zombie.flush()

    successor = transactional(closing, client, broker, f"{topic}-txn")
    with pytest.raises(Exception) as fenced:
        zombie.commit()
    assert is_fenced(client, fenced.value), f"the zombie's commit fails as fenced, not with {fenced.value!r}"
    s = values("successor", 2, 4)
    successor.transaction(topic, s, commit=True)

    committed = reader(closing, client, broker, "read_committed", assign=(topic, range(2)))
    assert by_partition(read(committed, 8)) == {p: [(5 + i, s[p][i]) for i in range(4)] for p in range(2)}
    assert drain(committed) == []
    uncommitted = reader(closing, client, broker, "read_uncommitted", assign=(topic, range(2)))
    assert by_partition(read(uncommitted, 16)) == {
        p: [(i, z[p][i]) for i in range(4)] + [(5 + i, s[p][i]) for i in range(4)] for p in range(2)
    }


# What a fenced producer's late record raises: kafka-python passes on the
# broker's INVALID_PRODUCER_EPOCH, aiokafka maps it to ProducerFenced;
# confluent-kafka fails the delivery and turns fatal (raised by produce,
# by the delivery callback or by flush, depending on timing: any exception).
LATE_RECORD_ERROR = {"kafka-python": "InvalidProducerEpochError", "aiokafka": "ProducerFenced"}


@pytest.mark.parametrize("client", CLIENTS)
def test_a_fenced_producers_late_records_are_refused(txn_broker, topic, closing, client):
    """A producer writes one record (offset 0) in a transaction; a second
    instance with its transactional id fences it, aborting the transaction
    (marker at 1). The first one's late record to the same partition, sent
    with its old epoch, is refused by the partition (INVALID_PRODUCER_EPOCH,
    as Kafka's Produce answers a fenced producer), and it cannot commit:
    the log holds the first record and the marker only (end offset 2). The
    new instance's record lands at 2."""
    broker = txn_broker
    ck.create_topic(broker, topic, 1)
    zombie = transactional(closing, client, broker, f"{topic}-txn")
    zombie.begin()
    zombie.send(topic, 0, b"first")
    zombie.flush()
    successor = transactional(closing, client, broker, f"{topic}-txn")

    with pytest.raises(Exception) as late:
        zombie.send(topic, 0, b"late")
        zombie.flush()
    if client in LATE_RECORD_ERROR:
        assert type(late.value).__name__ == LATE_RECORD_ERROR[client], repr(late.value)
    with pytest.raises(Exception):
        zombie.commit()

    uncommitted = reader(closing, client, broker, "read_uncommitted", assign=(topic, [0]))
    assert read(uncommitted, 1) == [(0, 0, b"first")]
    assert drain(uncommitted) == [], "the late record is not in the log"
    assert uncommitted.end_offsets(topic, [0]) == {0: 2}
    successor.transaction(topic, {0: [b"successor"]}, commit=True)
    committed = reader(closing, client, broker, "read_committed", assign=(topic, [0]))
    assert read(committed, 1) == [(0, 2, b"successor")]


# --- 5. transactional offsets ----------------------------------------------------------

# Clients whose read_committed consumer asks OffsetFetch for stable offsets
# (require_stable, KIP-447) and retries UNSTABLE_OFFSET_COMMIT until its
# timeout, and what that timeout raises; aiokafka sends OffsetFetch v3,
# without the flag.
UNSTABLE_TIMEOUT = {"confluent-kafka": "KafkaException", "kafka-python": "KafkaTimeoutError"}


@pytest.mark.parametrize("client", CLIENTS)
def test_transactional_offsets_are_visible_only_after_commit(txn_broker, topic, closing, client):
    """A group's committed offsets on a 2-partition input: a plain commit
    of 2 on partition 0, then offsets {0: 5, 1: 7} sent to a transaction
    (with one output record). While it is open OffsetFetch answers the
    plain commit (and nothing for partition 1): pending offsets are not
    committed ones; a read_committed confluent-kafka or kafka-python
    consumer, asking for stable offsets, is held back (UNSTABLE_OFFSET_
    COMMIT, retried until its 2 s timeout). After the commit the group has
    {0: 5, 1: 7}. Offsets {0: 9} sent to a transaction that is aborted are
    dropped: after a later transaction commits {1: 8}, partition 0 is
    still at 5 (the abort did not leave them pending for the producer's
    next commit)."""
    broker = txn_broker
    ck.create_topic(broker, topic, 2)
    out = f"{topic}-out"
    ck.create_topic(broker, out, 1)
    group = f"{topic}-g"
    # (aiokafka commits only for assigned partitions; nothing polls.)
    plain = reader(closing, client, broker, "read_uncommitted", group=group, assign=(topic, range(2)))
    plain.commit(topic, {0: 2})
    stable = reader(closing, client, broker, "read_committed", group=group)
    assert plain.committed(topic, range(2)) == {0: 2, 1: None}

    producer = transactional(closing, client, broker, f"{topic}-txn")
    producer.begin()
    producer.send(out, 0, b"x")
    producer.flush()
    producer.send_offsets(stable, topic, {0: 5, 1: 7})
    assert plain.committed(topic, range(2)) == {0: 2, 1: None}, "pending offsets are not committed"
    if client in UNSTABLE_TIMEOUT:
        with pytest.raises(Exception) as unstable:
            stable.committed(topic, range(2), timeout=2)
        assert type(unstable.value).__name__ == UNSTABLE_TIMEOUT[client], repr(unstable.value)

    producer.commit()
    wait_until(lambda: plain.committed(topic, range(2)) == {0: 5, 1: 7}, timeout=TIMEOUT, what="the committed offsets")
    assert stable.committed(topic, range(2)) == {0: 5, 1: 7}

    producer.begin()
    producer.send_offsets(stable, topic, {0: 9})
    producer.abort()
    producer.begin()
    producer.send_offsets(stable, topic, {1: 8})
    producer.commit()
    wait_until(lambda: plain.committed(topic, [1]) == {1: 8}, timeout=TIMEOUT, what="the second commit")
    assert plain.committed(topic, range(2)) == {0: 5, 1: 8}, "the aborted offset 9 was dropped"
    assert stable.committed(topic, range(2)) == {0: 5, 1: 8}


# --- the application in processes of its own (txn_app.py) ------------------------------


class AppProcess:
    """One txn_app.py process and the events it reported."""

    def __init__(self, client, broker, name, group, transactional_id, input_topic, output_topic, partitions, **opts):
        self.client = client
        self.name = name
        self.events = []
        self._lock = threading.Lock()
        self.stderr_path = Path(broker.temp) / f"app-{name}.log"
        cmd = [sys.executable, str(TXN_APP), client, broker.bootstrap, group, transactional_id]
        cmd += [input_topic, output_topic, str(partitions)]
        if opts.get("transaction_timeout_ms"):
            cmd += ["--transaction-timeout-ms", str(opts["transaction_timeout_ms"])]
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self.events.append(event)

    def of(self, *evs):
        with self._lock:
            return [e for e in self.events if e["ev"] in evs]

    def stderr_tail(self, lines=40):
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def next_event(self, timeout=60):
        """Waits for the next report after those already returned; returns
        it (an error report fails the test)."""
        seen = getattr(self, "_seen", 0)

        def arrived():
            with self._lock:
                return self.events[seen] if len(self.events) > seen else None

        try:
            event = wait_until(arrived, timeout=timeout, what=f"{self.name}'s next report")
        except AssertionError:
            raise AssertionError(f"{self.name} reported nothing in {timeout} s:\n{self.stderr_tail()}") from None
        self._seen = seen + 1
        assert event["ev"] != "error", f"{self.name} failed: {event}\n{self.stderr_tail()}"
        return event

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def command(self, line, expect, timeout=60):
        """Sends a command; waits for its report, of kind expect."""
        self.send(line)
        event = self.next_event(timeout)
        assert event["ev"] == expect, f"{self.name}: {line!r} reported {event}, not {expect}"
        return event

    def run(self, target, count, timeout=120):
        """Commands `run`; returns the committed reports until it is done
        (its committed offsets at target)."""
        self.send(f"run {json.dumps(target, separators=(',', ':'))} {count}")
        deadline = time.monotonic() + timeout
        reports = []
        while True:
            event = self.next_event(max(1, deadline - time.monotonic()))
            if event["ev"] == "done":
                assert event["offsets"] == {str(p): o for p, o in target.items()}, event
                return reports
            assert event["ev"] == "committed", f"{self.name}: run reported {event}"
            reports.append(event)

    def close(self, timeout=30):
        self.send("close")
        code = self.proc.wait(timeout=timeout)
        assert code == 0, f"{self.name} exited with {code}:\n{self.stderr_tail()}"

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def reap(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def apps():
    started = []

    def start(client, broker, name, *args, **opts):
        app = AppProcess(client, broker, name, *args, **opts)
        started.append(app)
        app.next_event()  # ready: initialized and assigned
        return app

    start.started = started
    yield start
    for app in started:
        app.reap()


def records_of(reports):
    """(partition, offset, value) of every record in the reports."""
    return [tuple(r) for e in reports for r in e["records"]]


# --- 4. consume-transform-produce --------------------------------------------------------

# (first instance, second instance, verifier): each client runs the
# application once before the crash, once after it, and verifies once.
EOS_RUNS = [
    ("confluent-kafka", "kafka-python", "aiokafka"),
    ("kafka-python", "aiokafka", "confluent-kafka"),
    ("aiokafka", "confluent-kafka", "kafka-python"),
]


@pytest.mark.parametrize("first,second,verifier", EOS_RUNS)
def test_consume_transform_produce_is_exactly_once_across_kills(
    fresh_txn_broker, topic, apps, closing, first, second, verifier
):
    """The exactly-once loop (KIP-98/447): 100 plain records on each of 2
    input partitions; an application (txn_app.py, a process) consumes them
    read_committed at its group's offsets and, per transaction, produces
    b"out:" + value to the same output partition and sends its next offsets
    to the transaction. An instance of client FIRST commits two
    transactions of 20 records and is SIGKILLed with a third open (flushed,
    offsets sent). An instance of client SECOND with the same
    transactional id takes over: its initialization aborts that
    transaction, so it resumes at the two commits' offsets and redoes those
    20 records. It leaves a transaction of 30 open while the broker is
    killed with kill -9 and restarted, then commits it (the transaction's
    state, records and pending offsets are durable), and finishes the input.
    Checked with VERIFIER's clients: read_committed output holds each input
    record exactly once, in input order per partition; read_uncommitted
    has the aborted 20 besides; the group's committed offsets are at the
    input's end (100 and 100)."""
    broker = fresh_txn_broker
    ck.create_topic(broker, topic, 2)
    out = f"{topic}-out"
    ck.create_topic(broker, out, 2)
    inputs = values("in", 2, 100)
    plain_send(closing, "confluent-kafka", broker, topic, inputs)
    args = (f"{topic}-g", f"{topic}-app", topic, out, 2)

    a = apps(first, broker, "first", *args)
    done = a.command("txn 20 commit", "committed")["records"] + a.command("txn 20 commit", "committed")["records"]
    open_txn = a.command("txn 20 open", "open")
    assert len(done) == 40 and len(open_txn["records"]) == 20
    a.kill()

    b = apps(second, broker, "second", *args)
    held = b.command("txn 30 open", "open")
    # The second instance starts at the first one's committed offsets (the
    # aborted 20 are taken again).
    first_commits = {}
    for e in a.of("committed"):
        first_commits.update({int(p): o for p, o in e["offsets"].items()})
    starts = {}
    for p, o, _ in held["records"]:
        starts[p] = min(starts.get(p, o), o)
    assert starts == {p: first_commits.get(p, 0) for p in starts}
    broker.kill()
    broker.restart()
    b.command("commit", "committed", timeout=90)
    rest = b.run({0: 100, 1: 100}, 25)
    b.close()

    committed_by_apps = collections.Counter(records_of([{"records": done}, held] + rest))
    assert sorted(committed_by_apps) == sorted((p, i, v.decode()) for p, vs in inputs.items() for i, v in enumerate(vs))
    assert set(committed_by_apps.values()) == {1}, "the applications committed each input record once"

    committed = reader(closing, verifier, broker, "read_committed", assign=(out, range(2)))
    got = by_partition(read(committed, 200))
    assert drain(committed) == []
    for p in range(2):
        want = [b"out:" + v for v in inputs[p]]
        assert [v for _, v in got[p]] == want, f"partition {p}: each input exactly once, in order"
    uncommitted = reader(closing, verifier, broker, "read_uncommitted", assign=(out, range(2)))
    everything = read(uncommitted, 220)
    assert drain(uncommitted) == []
    aborted = collections.Counter(v for _, _, v in everything) - collections.Counter(v for _, _, v in read_all(got))
    assert sorted(aborted.elements()) == sorted(b"out:" + v.encode() for _, _, v in map(tuple, open_txn["records"]))
    # The group's markers may still be on their way (aiokafka does not ask
    # for stable offsets).
    group = reader(closing, verifier, broker, "read_committed", group=f"{topic}-g")
    wait_until(lambda: group.committed(topic, range(2)) == {0: 100, 1: 100}, timeout=TIMEOUT, what="offsets at the end")


def read_all(by_part):
    return [(p, o, v) for p, recs in by_part.items() for o, v in recs]


# --- 6. a transaction left open times out ------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_an_abandoned_transaction_is_aborted_after_its_timeout(txn_broker, topic, apps, closing, client):
    """An application instance with transaction.timeout.ms 3000 puts 5
    input records (output offsets 0-4) and their offsets into a
    transaction and is SIGKILLed with it open; a plain record follows at
    output offset 5. Nobody ends the transaction: the broker aborts it
    once it is older than its timeout (the coordinators look every 200 ms
    here), writing the abort marker at 6, and a read_committed consumer
    held at the LSO (0) proceeds to the plain record, never seeing the 5,
    no sooner than 3 s after the transaction began. Its pending offsets
    are dropped (the group has none), and a new instance with the same
    transactional id (its epoch was bumped by the abort) processes the 5
    records again: output offsets 7-11, its marker at 12."""
    broker = txn_broker
    ck.create_topic(broker, topic, 1)
    out = f"{topic}-out"
    ck.create_topic(broker, out, 1)
    inputs = values("in", 1, 5)
    plain_send(closing, client, broker, topic, inputs)
    args = (f"{topic}-g", f"{topic}-app", topic, out, 1)

    a = apps(client, broker, "abandoning", *args, transaction_timeout_ms=3000)
    began = time.monotonic()
    assert len(a.command("txn 5 open", "open")["records"]) == 5
    a.kill()
    plain_send(closing, client, broker, out, {0: [b"after"]})

    committed = reader(closing, client, broker, "read_committed", assign=(out, [0]))
    assert read(committed, 1, timeout=60) == [(0, 5, b"after")]
    waited = time.monotonic() - began
    assert waited >= 3.0, f"the transaction was aborted {waited:.2f} s after it began, before its 3 s timeout"
    group = reader(closing, client, broker, "read_committed", group=f"{topic}-g")
    assert group.committed(topic, [0]) == {0: None}, "the timed-out transaction's offsets were dropped"

    b = apps(client, broker, "successor", *args, transaction_timeout_ms=3000)
    b.run({0: 5}, 10)
    b.close()
    assert by_partition(read(committed, 5)) == {0: [(7 + i, b"out:" + v) for i, v in enumerate(inputs[0])]}
    wait_until(lambda: group.committed(topic, [0]) == {0: 5}, timeout=TIMEOUT, what="the successor's offsets")
