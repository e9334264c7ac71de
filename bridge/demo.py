"""`callbridge demo`: the service and the sandbox in one process, one campaign, start to finish."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bridge.app import create_app
from bridge.cli_watch import print_dispositions
from bridge.ops.serving import on_listening
from bridge.settings import Settings

DEMO_TIMEOUT_SECONDS = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def example_csv() -> bytes:
    return resources.files("bridge").joinpath("examples/contacts.csv").read_bytes()


async def run_demo(*, contacts: Path | None, as_json: bool) -> int:
    console = Console(stderr=as_json)
    csv_bytes = await asyncio.to_thread(contacts.read_bytes) if contacts else example_csv()
    with tempfile.TemporaryDirectory(prefix="callbridge-demo-") as workdir:
        key = secrets.token_urlsafe(24)
        port = free_port()
        settings = Settings(
            database_url=f"sqlite:///{Path(workdir) / 'demo.db'}",
            api_keys=(key,),
            port=port,
            default_from_number="+15005550006",
        )
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.host, port).start()
        await on_listening(runner.app)
        try:
            async with aiohttp.ClientSession(
                base_url=settings.base_url, headers={"Authorization": f"Bearer {key}"}
            ) as http:
                summary = await _run_campaign(http, csv_bytes, console)
        finally:
            await runner.cleanup()
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print_dispositions(console, summary, title=f"Campaign {summary['campaign_id']}")
    return 0


async def _call(http: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> Any:
    async with http.request(method, path, **kw) as response:
        body = await response.json()
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: {response.status} {body}")
        return body


async def _run_campaign(
    http: aiohttp.ClientSession, csv_bytes: bytes, console: Console
) -> dict[str, Any]:
    campaign = await _call(
        http,
        "POST",
        "/api/v1/campaigns",
        json={
            "name": "demo",
            "agent_id": "agent_demo",
            "from_number": "+15005550006",
            "max_attempts": 3,
            "retry_delay_seconds": 1,
            "concurrency": 10,
        },
    )
    cid = campaign["id"]
    report = await _call(
        http,
        "POST",
        f"/api/v1/campaigns/{cid}/contacts",
        data=csv_bytes,
        headers={"Content-Type": "text/csv"},
    )
    console.print(
        f"Intake: {report['rows']} rows, [green]{report['accepted']} accepted[/], "
        f"[red]{report['rejected']} rejected[/]"
    )
    for error in report["errors"]:
        console.print(f"  row {error['row']}: {error['reason']} ({error['value']!r})")
    await _call(http, "POST", f"/api/v1/campaigns/{cid}/start")
    state = await _watch(http, cid, report["accepted"], console)
    return {
        "campaign_id": cid,
        "contacts": state["counts"]["contacts"],
        "attempts": state["counts"]["attempts"],
        "dispositions": state["counts"]["dispositions"],
        "intake": {k: report[k] for k in ("rows", "accepted", "rejected")},
    }


async def _watch(
    http: aiohttp.ClientSession, cid: str, total: int, console: Console
) -> dict[str, Any]:
    columns = (
        TextColumn("[bold]calling"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[live]} live"),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("calls", total=total, live=0)
        while True:
            state = await _call(http, "GET", f"/api/v1/campaigns/{cid}")
            counts = state["counts"]
            done = counts["contacts"] - counts["pending"] - counts["in_progress"]
            progress.update(task, completed=done, live=counts["in_progress"])
            if state["status"] == "completed":
                return state
            if time.monotonic() > deadline:
                raise RuntimeError(f"demo campaign did not finish in {DEMO_TIMEOUT_SECONDS} s")
            await asyncio.sleep(0.2)  # a display refresh, not a synchronisation
