"""B8: one node under steady load for a long time (default 60 min; ``--quick``: 6 min).

A campaign at cps 15 and concurrency 60 (3 attempts, 2 s between them) with more contacts than
the run can dial, so the load never stops. Two ways, each on a fresh database:

- carrier apart: `callbridge sandbox` in its own process, `serve` pointed at it
  (``CALLBRIDGE_SANDBOX_URL``), as Twilio would be;
- in-process: `serve` with the sandbox mounted, what a user rehearsing gets.

Every ``interval`` seconds the bench samples each process (RSS, open files, CPU time), the calls
the node placed (its /metrics), and times a few `GET /api/v1/campaigns/{id}`. After a warm-up,
the run is cut in quarters; the report sets the first and the last quarter side by side.

With ``--soak-trace`` the processes run under `bench.traced`: tracing starts at the end of the
warm-up, a snapshot is taken at the end of the first quarter and at the end of the run, and the
allocation sites that grew most between them are printed, with the growth per call placed.
Tracing costs CPU: CPU figures of a traced run compare the quarters, not other runs.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.common import Context, Figure
from tests.cluster import SandboxProcess
from tests.service import Service, wait_until

MB = 1024 * 1024
CPS = 15
CONCURRENCY = 60
READS_PER_SAMPLE = 3


def soak_numbers(count: int) -> list[str]:
    """Distinct valid New York numbers whose last two digits run 00..99 (every outcome)."""
    assert count <= 1_000_000
    return [f"+1212{200 + i // 10_000:03d}{i % 10_000:04d}" for i in range(count)]


def contacts_csv(numbers: list[str]) -> bytes:
    rows = ["phone_number,id,first_name"]
    rows += [f"{p},soak-{i},Person {i}" for i, p in enumerate(numbers)]
    return ("\n".join(rows) + "\n").encode()


class TracedService(Service):
    def __init__(self, *args: Any, traced: bool, **env: str) -> None:
        super().__init__(*args, **env)
        self.traced = traced

    def start(self) -> TracedService:
        module = "bench.traced" if self.traced else "bridge.cli"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, timeout=60, what=f"serve to listen (log: {self.log_path})")
        return self


class TracedSandbox(SandboxProcess):
    def __init__(self, *args: Any, traced: bool, **env: str) -> None:
        super().__init__(*args, **env)
        self.traced = traced

    def start(self) -> TracedSandbox:
        module = "bench.traced" if self.traced else "bridge.cli"
        log = self.log_path.open("ab")
        command = [sys.executable, "-m", module, "sandbox", "--host", self.host]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, timeout=60, what=f"the sandbox to listen ({self.log_path})")
        return self


@dataclass
class Sample:
    at: float  # seconds since the campaign started
    placed: float
    processes: dict[str, dict[str, float]]  # name -> rss_mb, fds, cpu_s
    reads_ms: list[float]


@dataclass
class Quarter:
    start: float
    end: float
    calls_per_second: float
    cpu_ms_per_call: dict[str, float]
    rss_mb: dict[str, tuple[float, float]]  # name -> (first, last)
    rss_mean_mb: dict[str, float]
    fds: dict[str, tuple[float, float]]
    read_p50_ms: float
    read_p95_ms: float


@dataclass
class Run:
    mode: str
    database: str
    minutes: float
    samples: list[Sample] = field(default_factory=list)
    traces: dict[str, list[str]] = field(default_factory=dict)
    traced_kb_per_call: dict[str, float] = field(default_factory=dict)
    campaign_end: dict[str, Any] = field(default_factory=dict)


def placed_calls(service: Service) -> float:
    response = requests.get(f"{service.url}/metrics", timeout=30)
    response.raise_for_status()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "callbridge_calls_placed_total":
                return float(sample.value)
    return 0.0


def process_figures(pid: int) -> dict[str, float]:
    process = psutil.Process(pid)
    cpu = process.cpu_times()
    return {
        "rss_mb": process.memory_info().rss / MB,
        "fds": float(process.num_fds()),
        "cpu_s": cpu.user + cpu.system,
    }


def timed_read(service: Service, campaign_id: str) -> float:
    started = time.perf_counter()
    response = service.api("GET", f"/api/v1/campaigns/{campaign_id}")
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


def quarter(samples: list[Sample], start: float, end: float) -> Quarter:
    inside = [s for s in samples if start <= s.at <= end]
    first, last = inside[0], inside[-1]
    seconds = last.at - first.at
    calls = last.placed - first.placed
    names = list(first.processes)
    reads = sorted(r for s in inside for r in s.reads_ms)
    return Quarter(
        start=first.at,
        end=last.at,
        calls_per_second=calls / seconds if seconds else 0.0,
        cpu_ms_per_call={
            n: (last.processes[n]["cpu_s"] - first.processes[n]["cpu_s"]) * 1000 / calls
            if calls
            else 0.0
            for n in names
        },
        rss_mb={n: (first.processes[n]["rss_mb"], last.processes[n]["rss_mb"]) for n in names},
        rss_mean_mb={n: statistics.fmean(s.processes[n]["rss_mb"] for s in inside) for n in names},
        fds={n: (first.processes[n]["fds"], last.processes[n]["fds"]) for n in names},
        read_p50_ms=statistics.median(reads),
        read_p95_ms=reads[int(0.95 * (len(reads) - 1))],
    )


def growing_sites(
    before: Path, after: Path, calls: float, top: int = 12
) -> tuple[list[str], float]:
    """The allocation sites that grew most between two snapshots, and KB per call overall."""
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    ]
    a = tracemalloc.Snapshot.load(str(before)).filter_traces(ignore)
    b = tracemalloc.Snapshot.load(str(after)).filter_traces(ignore)
    total = sum(s.size for s in b.statistics("filename")) - sum(
        s.size for s in a.statistics("filename")
    )
    lines = []
    for stat in b.compare_to(a, "traceback")[:top]:
        if stat.size_diff <= 0:
            continue
        # The innermost frame of ours (bridge/, campaigns/) says who keeps it; else the top one.
        frames = list(stat.traceback)
        ours = [f for f in frames if "/bridge/" in f.filename or "/campaigns/" in f.filename]
        where = ours[-1] if ours else frames[-1]
        per_call = stat.size_diff / 1024 / calls if calls else 0.0
        lines.append(
            f"{stat.size_diff / 1024:+.0f} KB ({per_call:.3f} KB/call, {stat.count_diff:+d} "
            f"blocks) at {_short(where.filename)}:{where.lineno}"
            f" (allocated in {_short(frames[-1].filename)}:{frames[-1].lineno})"
        )
    return lines, (total / 1024 / calls if calls else 0.0)


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/steady/", "/lib/python"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _snapshot(process: subprocess.Popen[bytes], directory: Path, n: int) -> Path:
    process.send_signal(signal.SIGUSR1)
    path = directory / f"{n}.snap"
    wait_until(path.exists, timeout=300, interval=0.5, what=f"tracemalloc snapshot {path}")
    return path


@contextmanager
def carrier_apart(
    ctx: Context, url: str, traced: bool, trace_dir: Path
) -> Iterator[TracedSandbox | None]:
    carrier = TracedSandbox(
        url, ctx.workdir, traced=traced, BENCH_TRACEMALLOC_DIR=str(trace_dir / "sandbox")
    )
    try:
        yield carrier.start()
    finally:
        carrier.stop()


def soak(ctx: Context, kind: str, mode: str, minutes: float, interval: float) -> Run:
    run = Run(mode=mode, database=kind, minutes=minutes)
    traced = ctx.soak_trace
    warmup = min(60.0, minutes * 60 * 0.15)
    total = minutes * 60
    quarter_end = warmup + (total - warmup) / 4
    contacts = int(CPS * total * 1.1) + 500
    trace_dir = ctx.workdir / f"trace-{kind}-{mode}-{os.getpid()}"
    with ctx.database(kind) as url:
        env = {"CALLBRIDGE_HOUSEKEEPING_SECONDS": "5", "CALLBRIDGE_PROVIDER_TIMEOUT_SECONDS": "10"}
        with contextlib_nullable(mode == "apart", ctx, url, traced, trace_dir) as carrier:
            if carrier is not None:
                env["CALLBRIDGE_SANDBOX_URL"] = carrier.url
            service = TracedService(
                url,
                ctx.workdir,
                traced=traced,
                BENCH_TRACEMALLOC_DIR=str(trace_dir / "serve"),
                **env,
            )
            try:
                service.start()
                assert service.process is not None
                pids = {"serve": service.process.pid}
                if carrier is not None and carrier.process is not None:
                    pids["sandbox"] = carrier.process.pid
                body = {
                    "name": "b8",
                    "agent_id": "agent_b8",
                    "from_number": "+15005550006",
                    "max_attempts": 3,
                    "retry_delay_seconds": 2,
                    "concurrency": CONCURRENCY,
                    "cps": CPS,
                }
                created = service.api("POST", "/api/v1/campaigns", json=body)
                assert created.status_code == 201, created.text
                campaign_id = str(created.json()["id"])
                uploaded = service.http.post(
                    f"{service.url}/api/v1/campaigns/{campaign_id}/contacts",
                    data=contacts_csv(soak_numbers(contacts)),
                    headers={"Content-Type": "text/csv"},
                    timeout=900,
                )
                assert uploaded.status_code == 200, uploaded.text[:2000]
                started = time.monotonic()
                response = service.api("POST", f"/api/v1/campaigns/{campaign_id}/start")
                assert response.status_code == 200, response.text
                snaps: dict[str, list[Path]] = {name: [] for name in pids}
                phase = 0  # 0 warm-up, 1 first quarter, 2 rest
                marks: list[float] = []
                while True:
                    at = time.monotonic() - started
                    reads = [timed_read(service, campaign_id) for _ in range(READS_PER_SAMPLE)]
                    sample = Sample(
                        at=at,
                        placed=placed_calls(service),
                        processes={n: process_figures(pid) for n, pid in pids.items()},
                        reads_ms=reads,
                    )
                    run.samples.append(sample)
                    print(
                        f"   {mode:7} {at:6.0f} s placed {sample.placed:7.0f} "
                        + " ".join(
                            f"{n} {p['rss_mb']:.1f} MB {p['fds']:.0f} fds {p['cpu_s']:.1f} s"
                            for n, p in sample.processes.items()
                        )
                        + f" read {statistics.median(reads):.1f} ms",
                        flush=True,
                    )
                    if traced and phase == 0 and at >= warmup:
                        for name, process in _processes(service, carrier).items():
                            snaps[name].append(_snapshot(process, trace_dir / name, 0))
                        phase, marks = 1, [sample.placed]
                    elif traced and phase == 1 and at >= quarter_end:
                        for name, process in _processes(service, carrier).items():
                            snaps[name].append(_snapshot(process, trace_dir / name, 1))
                        phase = 2
                        marks.append(sample.placed)
                    if at >= total:
                        break
                    time.sleep(max(0.0, interval - (time.monotonic() - started - at)))
                if traced and phase == 2:
                    for name, process in _processes(service, carrier).items():
                        snaps[name].append(_snapshot(process, trace_dir / name, 2))
                    calls = run.samples[-1].placed - marks[1]
                    for name, paths in snaps.items():
                        lines, kb = growing_sites(paths[1], paths[2], calls)
                        run.traces[name] = lines
                        run.traced_kb_per_call[name] = kb
                run.campaign_end = service.api("GET", f"/api/v1/campaigns/{campaign_id}").json()
            finally:
                service.stop()
    return run


def _processes(
    service: Service, carrier: SandboxProcess | None
) -> dict[str, subprocess.Popen[bytes]]:
    found = {"serve": service.process}
    if carrier is not None:
        found["sandbox"] = carrier.process
    return {name: process for name, process in found.items() if process is not None}


@contextmanager
def contextlib_nullable(
    apart: bool, ctx: Context, url: str, traced: bool, trace_dir: Path
) -> Iterator[TracedSandbox | None]:
    if not apart:
        yield None
        return
    with carrier_apart(ctx, url, traced, trace_dir) as carrier:
        yield carrier


def figures_of(run: Run) -> list[Figure]:
    warmup = min(60.0, run.minutes * 60 * 0.15)
    end = run.samples[-1].at
    span = (end - warmup) / 4
    first = quarter(run.samples, warmup, warmup + span)
    last = quarter(run.samples, end - span, end)
    label = "carrier apart" if run.mode == "apart" else "sandbox in-process"
    extra = {
        "first_quarter": first.__dict__,
        "last_quarter": last.__dict__,
        "samples": [s.__dict__ for s in run.samples],
        "traces": run.traces,
        "traced_kb_per_call": run.traced_kb_per_call,
        "campaign_end": {k: v for k, v in run.campaign_end.items() if k != "agent"},
    }
    side_by_side = (
        f"first quarter {first.start:.0f}-{first.end:.0f} s vs last {last.start:.0f}-"
        f"{last.end:.0f} s"
    )
    out = []
    for name in first.rss_mean_mb:
        out.append(
            Figure(
                bench="B8",
                what=f"{name} RSS, last quarter mean ({label}, {run.minutes:g} min)",
                value=last.rss_mean_mb[name],
                unit="MB",
                baseline=first.rss_mean_mb[name],
                baseline_what="first quarter mean, after warm-up",
                database=run.database,
                target="ratio <= 1.05",
                met=last.rss_mean_mb[name] <= 1.05 * first.rss_mean_mb[name],
                notes=(
                    f"{side_by_side}: RSS {first.rss_mb[name][0]:.1f} -> "
                    f"{first.rss_mb[name][1]:.1f} MB vs {last.rss_mb[name][0]:.1f} -> "
                    f"{last.rss_mb[name][1]:.1f} MB; open files {first.fds[name][0]:.0f} -> "
                    f"{first.fds[name][1]:.0f} vs {last.fds[name][0]:.0f} -> "
                    f"{last.fds[name][1]:.0f}"
                    + (
                        f"; traced growth {run.traced_kb_per_call[name]:.3f} KB/call, top sites: "
                        + "; ".join(run.traces.get(name, [])[:5])
                        if name in run.traced_kb_per_call
                        else ""
                    )
                ),
                extra=extra if name == "serve" else {},
            )
        )
        out.append(
            Figure(
                bench="B8",
                what=f"{name} CPU per call, last quarter ({label})",
                value=last.cpu_ms_per_call[name],
                unit="ms",
                baseline=first.cpu_ms_per_call[name],
                baseline_what="first quarter",
                database=run.database,
                target="ratio <= 1.10",
                met=last.cpu_ms_per_call[name] <= 1.10 * first.cpu_ms_per_call[name],
            )
        )
        out.append(
            Figure(
                bench="B8",
                what=f"{name} open files, end of last quarter ({label})",
                value=last.fds[name][1],
                unit="fds",
                baseline=first.fds[name][1],
                baseline_what="end of first quarter",
                database=run.database,
                target="reported (flat expected)",
            )
        )
    out.append(
        Figure(
            bench="B8",
            what=f"GET /api/v1/campaigns/{{id}} p50, last quarter ({label})",
            value=last.read_p50_ms,
            unit="ms",
            baseline=first.read_p50_ms,
            baseline_what="first quarter",
            database=run.database,
            target="value <= 50 ms and ratio <= 1.2",
            met=last.read_p50_ms <= 50 and last.read_p50_ms <= 1.2 * first.read_p50_ms,
            notes=f"p95 {first.read_p95_ms:.1f} ms vs {last.read_p95_ms:.1f} ms",
        )
    )
    out.append(
        Figure(
            bench="B8",
            what=f"calls per second held, last quarter ({label})",
            value=last.calls_per_second,
            unit="calls/s",
            baseline=first.calls_per_second,
            baseline_what="first quarter",
            database=run.database,
            target=f">= {CPS * 0.97:g} (cps {CPS})",
            met=last.calls_per_second >= CPS * 0.97,
        )
    )
    return out


def print_side_by_side(run: Run) -> None:
    warmup = min(60.0, run.minutes * 60 * 0.15)
    end = run.samples[-1].at
    span = (end - warmup) / 4
    first = quarter(run.samples, warmup, warmup + span)
    last = quarter(run.samples, end - span, end)
    print(f"   B8 {run.database} {run.mode}: first quarter | last quarter")
    print(f"     calls/s          {first.calls_per_second:8.2f} | {last.calls_per_second:8.2f}")
    print(f"     read p50 ms      {first.read_p50_ms:8.1f} | {last.read_p50_ms:8.1f}")
    for name in first.rss_mb:
        print(
            f"     {name:8} RSS MB  {first.rss_mb[name][0]:6.1f}->{first.rss_mb[name][1]:6.1f} | "
            f"{last.rss_mb[name][0]:6.1f}->{last.rss_mb[name][1]:6.1f}"
        )
        print(
            f"     {name:8} CPU/call ms {first.cpu_ms_per_call[name]:6.1f} | "
            f"{last.cpu_ms_per_call[name]:6.1f}"
        )
        print(f"     {name:8} fds     {first.fds[name][1]:8.0f} | {last.fds[name][1]:8.0f}")
    for name, lines in run.traces.items():
        print(f"     {name} traced growth {run.traced_kb_per_call[name]:.3f} KB/call; top sites:")
        for line in lines:
            print(f"       {line}")


def run(ctx: Context) -> list[Figure]:
    minutes = ctx.soak_minutes or (6.0 if ctx.quick else 60.0)
    interval = 5.0 if minutes <= 10 else 15.0
    modes = [m for m in (ctx.soak_modes or "apart,inprocess").split(",") if m]
    figures: list[Figure] = []
    for kind in ctx.databases:
        for mode in modes:
            result = soak(ctx, kind, mode, minutes, interval)
            print_side_by_side(result)
            figures += figures_of(result)
    return figures
