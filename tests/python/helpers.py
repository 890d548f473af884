"""Small helpers shared by the client test modules."""

import time

# Every record a test produces carries BASE_TS + its index as timestamp, so
# offsets_for_times has something exact to find.
BASE_TS = 1_700_000_000_000


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Polls predicate() until it returns a truthy value; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def records(n, prefix="r", keyed=True, headers=True):
    """n (key, value, headers, timestamp) tuples, distinct and recognisable."""
    out = []
    for i in range(n):
        key = f"{prefix}-k{i}".encode() if keyed else None
        value = f"{prefix}-v{i}-".encode() + bytes(range(i % 7)) * 3
        hdrs = [("h", f"{i}".encode()), ("second", b"x")] if headers and i % 2 == 0 else []
        out.append((key, value, hdrs, BASE_TS + i))
    return out


# --- raw Kafka wire format, for the hostile-input tests ----------------------

import socket  # noqa: E402
import struct  # noqa: E402


def request_frame(api_key, api_version, correlation_id, body=b"", client_id=b"stele-py-raw"):
    """A request with header v1 (key, version, correlation id, client id)."""
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def connect(broker, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=timeout)
    s.settimeout(timeout)
    return s


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def read_frame(s):
    (size,) = struct.unpack(">i", recv_exact(s, 4))
    return recv_exact(s, size)


def closed_by_peer(s, timeout=5.0):
    """True when the broker closes the connection (EOF or reset) within
    timeout without sending anything more; False if it stays open."""
    s.settimeout(timeout)
    try:
        data = s.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    if data:
        raise AssertionError(f"expected the connection to be closed, got {len(data)} bytes: {data[:64]!r}")
    return True


def parse_api_versions_v0(frame):
    """(correlation_id, error_code, {api_key: (min, max)}) of a v0 response."""
    correlation_id, error_code, count = struct.unpack_from(">ihi", frame, 0)
    apis = {}
    for i in range(count):
        key, lo, hi = struct.unpack_from(">hhh", frame, 10 + 6 * i)
        apis[key] = (lo, hi)
    return correlation_id, error_code, apis, 10 + 6 * count


# --- consumer-group members in processes of their own -------------------------

import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

GROUP_MEMBER = Path(__file__).with_name("group_member.py")


class Member:
    """A group_member.py process (one consumer of CLIENT in GROUP) and the
    events it reported; see that file for what each event means."""

    def __init__(
        self,
        client,
        broker,
        group,
        topic,
        name,
        assignor=None,
        instance_id=None,
        metadata="",
        session_timeout_ms=6000,
        group_protocol="classic",
    ):
        self.client = client
        self.name = name
        self.events = []
        self._lock = threading.Lock()
        self.stderr_path = Path(broker.temp) / f"member-{name}.log"
        cmd = [sys.executable, str(GROUP_MEMBER), client, broker.bootstrap, group, topic, "--name", name]
        if assignor:
            cmd += ["--assignor", assignor]
        if instance_id:
            cmd += ["--instance-id", instance_id]
        cmd += ["--metadata", metadata, "--session-timeout-ms", str(session_timeout_ms)]
        cmd += ["--group-protocol", group_protocol]
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def __repr__(self):
        return f"Member({self.client}, {self.name}, assignment={self.assignment()})"

    def _read(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            event["at"] = time.monotonic()
            with self._lock:
                self.events.append(event)

    def of(self, ev):
        with self._lock:
            return [e for e in self.events if e["ev"] == ev]

    def assignment(self):
        """The partitions it reported last (None before the first report)."""
        reports = self.of("assignment")
        return set(reports[-1]["partitions"]) if reports else None

    def processed(self):
        """(partition, offset, value) of every record it processed (= committed)."""
        return [tuple(r) for e in self.of("records") for r in e["records"]]

    def rebalances(self):
        return [(e["kind"], e["partitions"]) for e in self.of("rebalance")]

    def stderr_tail(self, lines=40):
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def close(self, timeout=30):
        """Closes the consumer cleanly (LeaveGroup); returns the exit code."""
        try:
            self.proc.stdin.write(b"close\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        assert code == 0 and self.of("closed"), f"{self.name} did not close cleanly ({code}):\n{self.stderr_tail()}"
        return code

    def kill(self):
        """SIGKILL: the member vanishes without leaving the group."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self):
        self.proc.send_signal(signal.SIGCONT)

    def reap(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


def split_of(members, partitions):
    """{member name: partitions} once every member reported a non-empty
    assignment and together they hold every partition exactly once; else
    None."""
    got = {m.name: m.assignment() for m in members}
    if any(not parts for parts in got.values()):
        return None
    if sorted(p for parts in got.values() for p in parts) != sorted(partitions):
        return None
    return got


def wait_split(members, partitions, timeout=30):
    """Waits for a full, non-overlapping assignment of partitions over members."""
    try:
        return wait_until(lambda: split_of(members, partitions), timeout=timeout, interval=0.1)
    except AssertionError:
        raise AssertionError(
            f"timed out after {timeout} s waiting for a full, non-overlapping split of {sorted(partitions)}; "
            f"last reported: {members}"
        ) from None
