"""Helpers for the long scenarios: many fictional numbers, and the sandbox carrier as its own
process (what several service nodes share, as they would share Twilio)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import phonenumbers
import requests
from sqlalchemy import select

from campaigns.db import make_engine
from campaigns.models import Attempt
from tests.campaign_flow import attempt_of
from tests.service import free_port, wait_until


@cache
def _us_area_codes() -> tuple[str, ...]:
    codes = []
    for area in range(201, 990):
        first, last = (phonenumbers.parse(f"+1{area}55501{n}") for n in ("00", "99"))
        if all(
            phonenumbers.is_valid_number(p) and phonenumbers.region_code_for_number(p) == "US"
            for p in (first, last)
        ):
            codes.append(str(area))
    return tuple(codes)


def many_numbers(count: int) -> list[str]:
    """Fictional US numbers (555-0100..0199 in each area code), last two digits 00..99."""
    areas = _us_area_codes()
    assert count <= 100 * len(areas)
    return [f"+1{areas[i // 100]}5550{100 + i % 100}" for i in range(count)]


class SandboxProcess:
    """`callbridge sandbox` as a subprocess."""

    def __init__(
        self, database_url: str, workdir: Path, host: str = "127.0.0.1", **env: str
    ) -> None:
        self.port = free_port()
        self.host = host
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"sandbox-{self.port}.log"
        self.env = {**os.environ, "CALLBRIDGE_DATABASE_URL": database_url, **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SandboxProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bridge.cli",
                "sandbox",
                "--host",
                self.host,
                "--port",
                str(self.port),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, timeout=30, what=f"the sandbox to listen ({self.log_path})")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"sandbox exited: {self.log_path.read_text()[-3000:]}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def calls(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.url}/sandbox/calls", timeout=60)
        response.raise_for_status()
        return list(response.json())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def most_per_wall_clock_second(instants: list[datetime]) -> int:
    """The most instants sharing one whole UTC second: calls per second as a carrier counts them."""
    seconds = Counter(int(t.timestamp() // 1) for t in instants)
    return max(seconds.values(), default=0)


def most_in_sliding_second(instants: list[datetime]) -> int:
    """The most instants inside any window [t, t + 1 s).

    At exactly n per second, instant i and instant i + n are 1 s apart, so any jitter at all
    puts n + 1 in some window: only a slower rate keeps this at n.
    """
    instants = sorted(instants)
    best, first = 0, 0
    for last, instant in enumerate(instants):
        while instants[first] <= instant - timedelta(seconds=1):
            first += 1
        best = max(best, last - first + 1)
    return best


def sent_instants(database_url: str) -> list[datetime]:
    """When each placed attempt's create left its node, as the node recorded it."""

    async def read() -> list[datetime]:
        engine = make_engine(database_url)
        try:
            async with engine.connect() as connection:
                rows = await connection.scalars(
                    select(Attempt.dialed_at).where(Attempt.dialed_at.is_not(None))
                )
                return list(rows)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def most_live_at_once(calls: list[dict[str, Any]]) -> int:
    """The most calls the carrier had between creation and end at any one instant."""
    changes: list[tuple[datetime, int]] = []
    for call in calls:
        changes.append((datetime.fromisoformat(call["created_at"]), 1))
        if call.get("end_time"):
            changes.append((datetime.fromisoformat(call["end_time"]), -1))
    live = best = 0
    for _, change in sorted(changes):  # at equal instants an end (-1) sorts before a start
        live += change
        best = max(best, live)
    return best


def scenario_figures(calls: list[dict[str, Any]], dispositions: Counter[str]) -> str:
    """The figures a scenario prints, pass or fail: what the carrier saw and how contacts ended."""
    created = [datetime.fromisoformat(call["created_at"]) for call in calls]
    per_attempt = Counter(attempt_of(call) for call in calls)
    return (
        f"dials: {len(calls)}; attempts dialled more than once: "
        f"{sum(1 for n in per_attempt.values() if n > 1)}; "
        f"dispositions: {dict(sorted(dispositions.items()))}; "
        f"most dials in one wall-clock second: {most_per_wall_clock_second(created)} "
        f"(in any sliding second: {most_in_sliding_second(created)}); "
        f"most live calls: {most_live_at_once(calls)}"
    )
