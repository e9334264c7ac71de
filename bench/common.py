"""What every benchmark shares: figures with their same-run baselines, databases, the report."""

from __future__ import annotations

import json
import os
import platform
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from tests.databases import on_server

POSTGRES_ENV = "CALLBRIDGE_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Figure:
    """One measured figure next to the baseline measured in the same run.

    ``ratio`` is value / baseline; ``target`` says which way it must go, e.g. ``<= 0.6`` for a
    ratio, or a bound on the value itself when ``on`` is ``"value"``.
    """

    bench: str  # "B1"
    what: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_what: str = ""
    database: str | None = None  # "sqlite" | "postgresql" | None when no database is involved
    target: str = ""  # human-readable, e.g. "ratio <= 0.6"
    met: bool | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def check(value: float, op: str, bound: float) -> bool:
    return {"<=": value <= bound, ">=": value >= bound, "==": value == bound}[op]


@dataclass
class Context:
    """What a benchmark is given: where to write, which databases, how big to go."""

    out: Path
    databases: list[str]
    quick: bool
    postgres_server: str
    workdir: Path
    # B8 (soak): minutes per run (None: 60, or 6 with quick), which modes, tracemalloc or not.
    soak_minutes: float | None = None
    soak_modes: str = ""
    soak_trace: bool = False

    def scale(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    @contextmanager
    def database(self, kind: str) -> Iterator[str]:
        """A fresh, empty database of ``kind``, dropped afterwards."""
        if kind == "sqlite":
            with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
                yield f"sqlite:///{tmp}/bench.db"
            return
        name = f"cb_bench_{secrets.token_hex(6)}"
        on_server(self.postgres_server, f'CREATE DATABASE "{name}"')
        try:
            yield (
                make_url(self.postgres_server)
                .set(database=name)
                .render_as_string(hide_password=False)
            )
        finally:
            on_server(self.postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_server() -> str:
    return os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_report(out: Path, figures: list[Figure], meta: dict[str, Any]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "report.json"
    md_path = out / "report.md"
    json_path.write_text(
        json.dumps({"meta": meta, "figures": [f.to_json() for f in figures]}, indent=2) + "\n"
    )
    md_path.write_text(markdown(figures, meta))
    return json_path, md_path


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def markdown(figures: list[Figure], meta: dict[str, Any]) -> str:
    lines = [
        "# callbridge benchmarks",
        "",
        f"Run {meta.get('started_at', '')} on {meta.get('cpus')} CPUs, Python {meta.get('python')}"
        f"{' (quick sizes)' if meta.get('quick') else ''}; took {meta.get('seconds', 0):.0f} s.",
        "",
        "| # | db | what | value | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        met = {True: "yes", False: "**no**", None: "-"}[f.met]
        baseline = f"{_num(f.baseline)} {f.unit}" if f.baseline is not None else "-"
        if f.baseline_what:
            baseline += f" ({f.baseline_what})"
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "-"
        lines.append(
            f"| {f.bench} | {f.database or '-'} | {f.what} | {_num(f.value)} {f.unit} "
            f"| {baseline} | {ratio} | {f.target} | {met} |"
        )
    notes = [f for f in figures if f.notes]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {f.bench} {f.database or ''} {f.what}: {f.notes}" for f in notes]
    return "\n".join(lines) + "\n"
