"""Fixtures of the Python client's tests: a live three-node mesh of real
``mass`` processes (the binary at ``$MASS_BIN``) on 127.0.0.1, started
once for the test file and killed at its end, whatever happened.

Each node gets its own temporary data dir and log, and ports the OS picks
(``--listen /ip4/127.0.0.1/tcp/0 --http 127.0.0.1:0``: distinct by
construction, so meshes of tests running in parallel never collide); the
node writes the addresses it bound to ``node.json`` in its data dir.
Readiness is polled against deadlines: the endpoints file, then
``/v1/health``, then every node listing every other as up with hardware.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, List, Optional

import pytest

# A script, not a pytest module: the formats e2e test runs it with a cases file.
collect_ignore = ["test_export.py"]

#: Liveness fast enough for tests, hardware measurement short (as
#: tests/e2e/support.rs FAST_CONFIG).
FAST_CONFIG = """
[membership]
advert_interval = "250ms"
down_after = "1500ms"
forget_after = "60s"

[net]
bootstrap_timeout = "3s"
ping_interval = "500ms"

[hardware]
gemm_size = 128
gemm_budget = "30ms"
probe_gpus = false

[storage]
repair_interval = "500ms"
"""

START_DEADLINE = 60.0
MESH_DEADLINE = 60.0


def eventually(what: str, condition: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """Polls ``condition`` until it returns something truthy, failing the
    test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - reported if the deadline passes
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}{detail}")
        time.sleep(every)


def _die_with_parent() -> None:
    """In the child before exec: be killed when the test process dies, even
    by SIGKILL (Linux), so no node outlives its test run."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


class Node:
    """One ``mass node start`` process."""

    def __init__(self, binary: str, root: str, name: str, config: str, bootstrap: Optional[str]) -> None:
        self.name = name
        self.data_dir = os.path.join(root, name)
        self.log_path = os.path.join(root, f"{name}.log")
        os.makedirs(self.data_dir, exist_ok=True)
        args = [
            binary,
            "node",
            "start",
            "--data-dir",
            self.data_dir,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--http",
            "127.0.0.1:0",
            "--no-mdns",
            "--config",
            config,
        ]
        if bootstrap:
            args += ["--bootstrap", bootstrap]
        self._log = open(self.log_path, "ab")
        self.process: Optional[subprocess.Popen] = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self.endpoints: Dict[str, Any] = {}

    def wait_started(self, deadline: float) -> None:
        path = os.path.join(self.data_dir, "node.json")

        def written() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode} before serving:\n{self.log()}")
            try:
                with open(path) as f:
                    self.endpoints = json.load(f)
                return True
            except (OSError, ValueError):
                return False

        remaining = max(1.0, deadline - time.monotonic())
        try:
            eventually(f"{self.name} writes node.json", written, remaining, every=0.05)
        except RuntimeError as e:
            raise AssertionError(str(e)) from None
        eventually(
            f"{self.name} answers /v1/health",
            lambda: get_json(self.url + "/v1/health", timeout=2)["status"] == "ok",
            max(1.0, deadline - time.monotonic()),
        )

    @property
    def url(self) -> str:
        return self.endpoints["http_url"].rstrip("/")

    @property
    def peer_id(self) -> str:
        return self.endpoints["peer_id"]

    @property
    def listen_addr(self) -> str:
        return self.endpoints["listen_addrs"][0]

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would; waits for the process to be gone."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
            self.process = None
        self._log.close()

    def log(self, tail: int = 60) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(lines[-tail:])


class Mesh:
    """Nodes of one test run; the first is the bootstrap of the others."""

    def __init__(self, binary: str, size: int) -> None:
        self.root = tempfile.mkdtemp(prefix="mass-pytest-")
        self.config = os.path.join(self.root, "node.toml")
        with open(self.config, "w") as f:
            f.write(FAST_CONFIG)
        self.nodes: List[Node] = []
        self.binary = binary
        self.size = size

    def start(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        first = Node(self.binary, self.root, "node0", self.config, None)
        self.nodes.append(first)
        first.wait_started(deadline)
        for i in range(1, self.size):
            self.nodes.append(Node(self.binary, self.root, f"node{i}", self.config, first.listen_addr))
        for node in self.nodes[1:]:
            node.wait_started(deadline)
        ids = {n.peer_id for n in self.nodes}

        def formed() -> bool:
            for node in self.nodes:
                up = {
                    p["peer_id"]
                    for p in get_json(node.url + "/v1/peers", timeout=2)
                    if p["state"] == "up" and p.get("hardware") and p.get("load")
                }
                if not ids <= up:
                    return False
            return True

        eventually("every node lists the others as up with hardware", formed, MESH_DEADLINE, every=0.2)

    @property
    def urls(self) -> List[str]:
        return [n.url for n in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def logs(self) -> str:
        return "\n".join(f"----- log of {n.name} (last lines) -----\n{n.log()}" for n in self.nodes)


def mass_binary() -> str:
    binary = os.environ.get("MASS_BIN")
    if not binary:
        pytest.fail("set MASS_BIN to the mass binary (cargo build -p mass-node: target/debug/mass)", pytrace=False)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(f"MASS_BIN={binary} is not an executable file", pytrace=False)
    return binary


@pytest.fixture
def secured_node(tmp_path) -> Any:
    """A lone node whose data dir holds a ``predict`` token: it refuses
    calls without a token, and writes with this one. Yields (node, token)."""
    binary = mass_binary()
    data_dir = tmp_path / "secure"
    made = subprocess.run(
        [binary, "token", "create", "--role", "predict", "--name", "app", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[0]
    config = tmp_path / "node.toml"
    config.write_text(FAST_CONFIG)
    node = Node(binary, str(tmp_path), "secure", str(config), None)
    try:
        node.wait_started(time.monotonic() + START_DEADLINE)
        yield node, token
    finally:
        node.kill()


@pytest.fixture(scope="module")
def mesh(request: pytest.FixtureRequest):
    """A live three-node mesh for the test module; every node is killed
    at the end, and their logs printed when a test failed."""
    cluster = Mesh(mass_binary(), 3)
    failed_before = request.session.testsfailed
    try:
        try:
            cluster.start()
        except BaseException:
            sys.__stderr__.write(cluster.logs() + "\n")
            raise
        yield cluster
    finally:
        cluster.stop()
        if request.session.testsfailed > failed_before:
            sys.__stderr__.write(cluster.logs() + "\n")
        shutil.rmtree(cluster.root, ignore_errors=True)
