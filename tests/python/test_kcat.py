"""kcat (Debian's 1.7.1, librdkafka 2.0.2 built in): an older negotiation
path than confluent-kafka's librdkafka. Skipped when kcat is not installed."""

import json
import shutil
import subprocess

import pytest

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (apt-get install kcat)")


def kcat(broker, *args, stdin=None, timeout=30):
    proc = subprocess.run(
        [KCAT, "-b", broker.bootstrap, "-X", "broker.address.family=v4", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}"
    return proc.stdout


def consume_json(broker, topic, *args):
    out = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q", *args)
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def test_version_carries_librdkafka_2_0(broker):
    out = subprocess.run([KCAT, "-V"], capture_output=True, timeout=10).stdout.decode()
    assert "librdkafka" in out


def test_metadata_listing(broker, topic):
    kcat(broker, "-P", "-t", topic, stdin=b"one\n")  # auto-creates it
    md = json.loads(kcat(broker, "-L", "-J"))
    (b,) = md["brokers"]
    assert b["name"] == f"127.0.0.1:{broker.port}"
    assert md["controllerid"] == b["id"]
    (t,) = [t for t in md["topics"] if t["topic"] == topic]
    assert "error" not in t
    (p,) = t["partitions"]
    assert (p["partition"], p["leader"]) == (0, b["id"])
    plain = kcat(broker, "-L", "-t", topic).decode()
    assert f'topic "{topic}" with 1 partitions' in plain


def test_produce_lines_and_consume_them_back(broker, topic):
    lines = [f"line {i}" for i in range(100)]
    kcat(broker, "-P", "-t", topic, stdin=("\n".join(lines) + "\n").encode())
    got = consume_json(broker, topic)
    assert [m["payload"] for m in got] == lines
    assert [m["offset"] for m in got] == list(range(100))
    assert {m["partition"] for m in got} == {0}


def test_keys_headers_partition_and_format(broker, topic):
    kcat(broker, "-P", "-t", topic, "-p", "0", "-K", ":", "-H", "h1=v1", "-H", "h2=v2", stdin=b"k1:a\nk2:b\n:c\n")
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%o|%k|%s|%h\n")
    assert out.decode().splitlines() == ["0|k1|a|h1=v1,h2=v2", "1|k2|b|h1=v1,h2=v2", "2||c|h1=v1,h2=v2"]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression(broker, topic, codec):
    lines = [f"compressible line {i} " * 10 for i in range(50)]
    kcat(broker, "-P", "-t", topic, "-z", codec, stdin=("\n".join(lines) + "\n").encode())
    assert [m["payload"] for m in consume_json(broker, topic)] == lines


def test_idempotent_producer(broker, topic):
    kcat(broker, "-P", "-t", topic, "-X", "enable.idempotence=true", stdin=b"x\ny\nz\n")
    assert [m["payload"] for m in consume_json(broker, topic)] == ["x", "y", "z"]


def test_consume_from_offset_and_tail(broker, topic):
    kcat(broker, "-P", "-t", topic, stdin=("\n".join(str(i) for i in range(10)) + "\n").encode())
    got = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "7", "-e", "-q", "-f", "%s\n")
    assert got.decode().splitlines() == ["7", "8", "9"]
    # Negative offsets count back from the end (a ListOffsets(latest) lookup).
    got = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "-2", "-e", "-q", "-f", "%s\n")
    assert got.decode().splitlines() == ["8", "9"]
    # From the end: nothing, then exit at EOF.
    assert kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "end", "-e", "-q") == b""
