"""Fixtures for the Python client compatibility suite.

The real `stele` binary (never built here: $STELE_BIN, default
target/debug/stele at the repository root) is started on a free loopback
port with a temporary data directory under target/ (on disk, not tmpfs, so
O_DIRECT is exercised), exactly as broker/tests/common/mod.rs does:
`--listen 127.0.0.1:PORT --data-dir DIR --shards 2`, ready once the log says
"ready: accepting Kafka clients" and a TCP connect succeeds.

Fixtures:
  broker        one broker per test module (fast)
  fresh_broker  a broker of its own for one test (restart tests)
  txn_broker, fresh_txn_broker
                the same, aborting transactions past their timeout within
                200 ms (TXN_CONFIG) for the transaction tests
  topic         a topic name unique to the test
  members       starts consumer-group members in processes of their own
                (helpers.Member); whatever is still running is killed at
                the end of the test

On a failing test the tail of each broker's log used by it is attached to
the report.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
READY_LINE = "ready: accepting Kafka clients"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
# The transaction coordinators look for transactions open past their
# timeout every 200 ms (Kafka's default: 10 s), so that one left open by a
# vanished producer is aborted within a test.
TXN_CONFIG = '[transactions]\n"transaction.abort.timed.out.transaction.cleanup.interval.ms" = 200\n'


def stele_bin() -> Path:
    path = Path(os.environ.get("STELE_BIN", REPO / "target" / "debug" / "stele"))
    if not path.is_absolute():
        path = REPO / path
    return path


def tmp_root() -> Path:
    root = Path(os.environ.get("STELE_TEST_TMP", REPO / "target" / "python-tmp"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A running `stele` process on a free port and its own data dir."""

    def __init__(self, name: str, shards: int = 2, extra_config: str = ""):
        self.temp = Path(tempfile.mkdtemp(prefix=f"stele-py-{name}-", dir=tmp_root()))
        self.data_dir = self.temp / "data"
        self.log_path = self.temp / "stele.log"
        self.port = free_port()
        self.shards = shards
        self.proc = None
        # Each partition's log preallocates min(segment size, 256 MiB) of real
        # disk blocks: with the 1 GiB default, a module's ~40 topics would
        # hold ~10 GiB. 8 MiB segments keep the suite small (and roll).
        self.config_path = self.temp / "stele.toml"
        # Groups form at once (no initial rebalance delay) and KIP-848
        # members heartbeat every 500 ms with 10 s sessions, so that the
        # group tests take seconds; Kafka's defaults are 3 s, 5 s and 45 s.
        # extra_config (TOML, e.g. a [transactions] table) is appended.
        self.config_path.write_text(
            '[topics]\n"log.segment.bytes" = 8388608\n'
            "[groups]\n"
            '"group.initial.rebalance.delay.ms" = 0\n'
            '"group.consumer.min.session.timeout.ms" = 6000\n'
            '"group.consumer.session.timeout.ms" = 10000\n'
            '"group.consumer.min.heartbeat.interval.ms" = 500\n'
            '"group.consumer.heartbeat.interval.ms" = 500\n' + extra_config
        )
        self.spawn()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 150) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def spawn(self):
        log_start = len(self.log())
        env = dict(os.environ, RUST_LOG=os.environ.get("STELE_RUST_LOG", "info"), NO_COLOR="1")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(stele_bin()),
                    "--config", str(self.config_path),
                    "--listen", self.bootstrap,
                    "--data-dir", str(self.data_dir),
                    "--shards", str(self.shards),
                    # Touching 320 MiB per shard would add about a second
                    # and most of a GiB to every broker the suite starts;
                    # broker/tests/startup.rs covers the default.
                    "--prefault-memory", "false",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(f"stele exited during startup with {code}:\n{self.log_tail()}")
            if READY_LINE in self.log()[log_start:]:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"stele did not become ready in {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM, wait; returns the exit code."""
        proc, self.proc = self.proc, None
        with open(self.log_path, "a") as log:
            log.write(f"[conftest] SIGTERM to pid {proc.pid} at {time.time():.3f}\n")
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"stele did not stop within {STOP_TIMEOUT_S} s of SIGTERM:\n{self.log_tail()}")

    def restart(self):
        assert self.proc is None, "stop first"
        self.spawn()

    def kill(self):
        if self.proc is not None:
            with open(self.log_path, "a") as log:
                log.write(f"[conftest] SIGKILL to pid {self.proc.pid} at {time.time():.3f}\n")
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def close(self, keep: bool = False):
        self.kill()
        if not keep:
            shutil.rmtree(self.temp, ignore_errors=True)


def _close(b: Broker, failed: bool):
    # Keep the data dir and log of a module/test that failed (or all of them
    # with STELE_KEEP_TMP=1), for a look.
    b.close(keep=failed or os.environ.get("STELE_KEEP_TMP") == "1")


@pytest.fixture(scope="module")
def broker(request):
    if not stele_bin().exists():
        pytest.exit(f"stele binary not found at {stele_bin()} (build it: cargo build -p stele-broker)", returncode=2)
    b = Broker(request.module.__name__.rsplit(".", 1)[-1])
    yield b
    alive = b.is_running()
    _close(b, getattr(request.module, "_stele_failed", False))
    assert alive, "the module's broker died during the tests"


@pytest.fixture
def fresh_broker(request):
    b = Broker(re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:40])
    yield b
    _close(b, getattr(request.node, "_stele_failed", False))


@pytest.fixture(scope="module")
def txn_broker(request):
    b = Broker(request.module.__name__.rsplit(".", 1)[-1], extra_config=TXN_CONFIG)
    yield b
    alive = b.is_running()
    _close(b, getattr(request.module, "_stele_failed", False))
    assert alive, "the module's broker died during the tests"


@pytest.fixture
def fresh_txn_broker(request):
    b = Broker(re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:40], extra_config=TXN_CONFIG)
    yield b
    _close(b, getattr(request.node, "_stele_failed", False))


@pytest.fixture
def topic(request):
    base = re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:100]
    return f"{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def members():
    from helpers import Member

    started = []

    def start(client, broker, group, topic, name=None, **opts):
        m = Member(client, broker, group, topic, name or f"{client}-{len(started)}", **opts)
        started.append(m)
        return m

    start.started = started
    yield start
    for m in started:
        m.reap()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        item._stele_failed = True
        item.module._stele_failed = True
        for name, value in item.funcargs.items():
            if isinstance(value, Broker):
                report.sections.append((f"stele log ({name}: {value.log_path})", value.log_tail()))
            for m in getattr(value, "started", []):
                events = "\n".join(json.dumps(e) for e in m.events)
                report.sections.append((f"member {m.name} ({m.client}) events", events[-20000:]))
                report.sections.append((f"member {m.name} stderr", m.stderr_tail()))
