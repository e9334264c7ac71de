"""Every test gets a database of its own: a SQLite file, or a fresh PostgreSQL database when
CALLBRIDGE_TEST_DATABASE_URL names a server (the suite runs both ways in CI)."""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge.app import create_app
from bridge.migrate import upgrade_to_head
from bridge.settings import Settings
from campaigns.db import make_engine, make_sessionmaker
from tests.databases import on_server
from tests.service import Service, free_port

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


async def housekeeping_finished(within: float = 30.0) -> None:
    """Wait for a scheduler job in flight (housekeeping) to finish before the app shuts down.

    Shutting down cancels a running job; one cancelled in the middle of an aiosqlite query can
    leave the connection's close pending for good and hang the event loop's teardown.
    """

    def idle() -> bool:
        return not any(
            task.get_coro().__qualname__ == "run_coroutine_job"  # type: ignore[union-attr]
            for task in asyncio.all_tasks()
            if not task.done()
        )

    await eventually(idle, within=within, what="housekeeping to finish", every=0.02)


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


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """The suite runs on as many workers as the machine has cores (``-n auto`` in pyproject.toml):
    most tests wait on a service of their own, so one worker keeps a core only half busy. The long
    scenarios run one at a time in one process: each measures a whole machine's worth of calls."""
    if config.getoption("--scenarios"):
        return 0
    return None


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
async def app_client(
    aiohttp_server: Any, aiohttp_client: Any, database_url: str
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """callbridge in this process, on the test's own database: ``await app_client(**settings)``
    gives an aiohttp test client of an app built from ``Settings(**settings)``. The app listens
    on a real port of its own, which the sandbox calls back as it would a public URL."""

    async def start(**settings: Any) -> Any:
        port = free_port()
        app = create_app(Settings(database_url=database_url, port=port, **settings))
        return await aiohttp_client(await aiohttp_server(app, port=port))

    yield start
    # Housekeeping passes still running in the background end before the database is dropped.
    await housekeeping_finished()


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
