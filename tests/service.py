"""`callbridge serve` as a real subprocess, for end-to-end and crash tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

API_KEY = "test-key-" + "0" * 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, *, timeout: float, interval: float = 0.05, what: str = "") -> Any:
    """Poll until predicate() is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


class Service:
    def __init__(self, database_url: str, workdir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"serve-{self.port}.log"
        self.env = {
            **os.environ,
            "CALLBRIDGE_DATABASE_URL": database_url,
            "CALLBRIDGE_API_KEYS": API_KEY,
            "CALLBRIDGE_PORT": str(self.port),
            "CALLBRIDGE_HOUSEKEEPING_SECONDS": "1",
            "CALLBRIDGE_PROVIDER_TIMEOUT_SECONDS": "3",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {API_KEY}"

    def start(self) -> Service:
        # The child writes to its own copy of the descriptor: ours is closed once it has started.
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bridge.cli", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._ready, timeout=30, what=f"serve to listen (log: {self.log_path})")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited: {self.log_path.read_text()[-3000:]}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no cleanup, no goodbye."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.http.request(method, f"{self.url}{path}", timeout=30, **kw)

    def sandbox_calls(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.url}/sandbox/calls", timeout=30)
        response.raise_for_status()
        return list(response.json())
