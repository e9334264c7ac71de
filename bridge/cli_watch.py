"""`callbridge campaign watch`: a campaign's progress redrawn until it ends, and its exit code."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from bridge.cli_common import EXIT_ATTENTION, EXIT_FAILURE, EXIT_OK, Api, Failure

ENDED = ("completed", "cancelled")
# How many live calls the view lists (the rest are counted).
SHOWN_LIVE_CALLS = 8


@dataclass
class Outcome:
    """How a watched campaign ended: its final state, its attention items, the exit status."""

    campaign: dict[str, Any]
    attention: list[dict[str, Any]]

    @property
    def exit_code(self) -> int:
        if self.campaign["status"] == "cancelled":
            return EXIT_FAILURE
        return EXIT_ATTENTION if self.attention else EXIT_OK

    def summary(self) -> dict[str, Any]:
        counts = self.campaign["counts"]
        return {
            "campaign_id": self.campaign["id"],
            "status": self.campaign["status"],
            "contacts": counts["contacts"],
            "attempts": counts["attempts"],
            "dispositions": counts["dispositions"],
            "attention": self.attention,
            "exit_code": self.exit_code,
        }


def watch(
    api: Api, campaign_id: str, console: Console, *, interval: float, timeout: float | None
) -> Outcome:
    """Redraw the campaign's view every ``interval`` seconds until it is completed or cancelled."""
    deadline = None if timeout is None else time.monotonic() + timeout
    view, attention = _poll(api, campaign_id)
    # Redrawn in place on a terminal; into a pipe or a file, only the final state is written.
    live = Live(render(view, attention), console=console, auto_refresh=False)
    with live if console.is_terminal else nullcontext():
        while view["status"] not in ENDED:
            if deadline is not None and time.monotonic() > deadline:
                raise Failure(f"campaign {campaign_id} still {view['status']} after {timeout} s")
            time.sleep(interval)  # the display's refresh rate, not a synchronisation
            view, attention = _poll(api, campaign_id)
            if console.is_terminal:
                live.update(render(view, attention), refresh=True)
    if not console.is_terminal:
        console.print(render(view, attention))
    campaign = api.call("GET", f"/api/v1/campaigns/{campaign_id}")
    return Outcome(campaign, attention)


def _poll(api: Api, campaign_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    view = api.call("GET", f"/api/v1/dashboard/campaigns/{campaign_id}")
    attention = api.call("GET", f"/api/v1/campaigns/{campaign_id}/attention")["items"]
    return view, attention


def render(view: dict[str, Any], attention: list[dict[str, Any]]) -> RenderableType:
    counts = view["counts"]
    total, done = counts["contacts"], counts["done"]
    status_style = {"running": "green", "paused": "yellow", "cancelled": "red"}.get(
        view["status"], "bold"
    )
    header = Text.assemble(
        (view["name"], "bold"), "  ", view["id"], "  ", (view["status"], status_style)
    )
    minutes = view.get("calls_per_minute", {}).get("minutes") or [{"calls": 0}]
    next_call = view.get("next_call_at") or "-"
    progress = Table.grid(padding=(0, 2))
    progress.add_row(
        ProgressBar(total=max(total, 1), completed=done, width=40),
        Text(f"{done}/{total} done"),
        Text(f"{counts.get('live_calls', counts.get('in_progress', 0))} live"),
    )
    figures = Text(
        f"calls this minute {minutes[-1]['calls']}, last minute "
        f"{minutes[-2]['calls'] if len(minutes) > 1 else 0}   next call {next_call}"
    )
    dispositions = Table("disposition", "contacts", box=None, padding=(0, 2))
    for name, count in counts["dispositions"].items():
        if count:
            dispositions.add_row(name, str(count))
    parts: list[RenderableType] = [header, progress, figures, dispositions]
    live_calls = view.get("live_calls") or []
    if live_calls:
        calls = Table("live call", "attempt", "status", "since", box=None, padding=(0, 2))
        for call in live_calls[:SHOWN_LIVE_CALLS]:
            calls.add_row(call["phone_number"], str(call["number"]), call["status"], call["since"])
        if len(live_calls) > SHOWN_LIVE_CALLS:
            calls.add_row(f"... and {len(live_calls) - SHOWN_LIVE_CALLS} more", "", "", "")
        parts.append(calls)
    for item in attention:
        state = "open" if item.get("open") else "closed"
        parts.append(
            Text(
                f"attention ({state}) {item['kind']}: {item['message']} - {item['remedy']}",
                style="bold red" if item.get("open") else "red",
            )
        )
    return Group(*parts)


def print_dispositions(console: Console, summary: dict[str, Any], title: str | None = None) -> None:
    """A campaign's contacts by disposition, and the calls placed: the end of `run`, `watch`
    and `demo`."""
    table = Table(title=title)
    table.add_column("disposition")
    table.add_column("contacts", justify="right")
    for name, count in summary["dispositions"].items():
        table.add_row(name, str(count))
    table.add_row("[bold]total", f"[bold]{summary['contacts']}")
    console.print(table)
    console.print(f"{summary['attempts']} calls placed for {summary['contacts']} contacts.")


def print_summary(console: Console, outcome: Outcome) -> None:
    summary = outcome.summary()
    console.print(f"[bold]campaign {summary['campaign_id']} {summary['status']}")
    print_dispositions(console, summary)
    if outcome.attention:
        console.print(f"[red]{len(outcome.attention)} attention item(s): see above.")
