"""Every test gets a database of its own: a SQLite file, or a fresh PostgreSQL database when
CALLBRIDGE_TEST_DATABASE_URL names a server (the suite runs both ways in CI)."""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge.migrate import upgrade_to_head
from campaigns.db import make_engine, make_sessionmaker
from tests.databases import on_server
from tests.service import Service

TEST_DATABASE_URL_ENV = "CALLBRIDGE_TEST_DATABASE_URL"


async def eventually(
    probe: Callable[[], Any], *, within: float = 15.0, what: str = "", every: float = 0.01
) -> Any:
    """Poll ``probe`` (a function or a coroutine function) every ``every`` seconds until it returns
    something truthy, and return that; fail after ``within`` seconds, naming ``what``. Tests wait
    for conditions this way, never for a fixed time. (Tests driving a service in another process:
    service.wait_until.)
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or probe}")
        await asyncio.sleep(every)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--scenarios",
        action="store_true",
        help="also run the long scenario tests (chaos, multi-node), marked 'scenario'",
    )
    parser.addoption(
        "--scenario-seed",
        type=int,
        default=None,
        help="replay a scenario with the seed a run printed (default: a fresh random seed)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Deselected, not skipped: they do not fail, they belong to another run (see .ci/run).
    if config.getoption("--scenarios"):
        return
    long = [item for item in items if item.get_closest_marker("scenario")]
    if long:
        config.hook.pytest_deselected(items=long)
        items[:] = [item for item in items if not item.get_closest_marker("scenario")]


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    server = os.environ.get(TEST_DATABASE_URL_ENV)
    if not server:
        yield f"sqlite:///{tmp_path / 'callbridge.db'}"
        return
    name = f"cb_test_{secrets.token_hex(6)}"
    on_server(server, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        on_server(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def sm(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A sessionmaker on the test's database, migrated to the head revision."""
    engine = make_engine(database_url)
    try:
        await upgrade_to_head(engine)
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def service(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Iterator[Service]:
    """`callbridge serve` with the sandbox, as a subprocess, on the test's own database.

    A module or a test sets the service's environment with ``pytest.mark.service_env(NAME="value",
    ...)``; ``shown=<an aware datetime>`` starts the service's clock at that instant (the offset is
    taken when the service starts, not when the module is read).
    """
    env: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("service_env"))):
        env.update(marker.kwargs)
    shown = env.pop("shown", None)
    if shown is not None:
        assert isinstance(shown, datetime), "service_env(shown=...) takes an aware datetime"
        env["CALLBRIDGE_CLOCK_OFFSET_SECONDS"] = str((shown - datetime.now(UTC)).total_seconds())
    running = Service(database_url, tmp_path, **env).start()
    yield running
    running.stop()


@pytest.fixture
def scenario_seed(request: pytest.FixtureRequest) -> int:
    """The seed of a long scenario's random choices (faults, kill moments), printed so that a
    failing run can be replayed with `--scenario-seed`."""
    seed = request.config.getoption("--scenario-seed")
    if seed is None:
        seed = secrets.randbelow(2**31)
    print(
        f"scenario seed: {seed} (replay: pytest --scenarios {request.node.nodeid} "
        f"--scenario-seed {seed})"
    )
    return int(seed)
