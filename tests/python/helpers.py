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
