"""B1: CSV intake of a million rows, validated and stored, against a plain phonenumbers loop.

The CSV is made deterministically (seeded): US, GB and DE numbers written the ways people write
them, about 5% invalid and 2% repeats of an earlier number (often in another format). The baseline
is a single-process loop of ``phonenumbers.parse`` + ``is_valid_number`` + E.164 formatting over
the same cells, run in a subprocess of its own; it also gives the counts the import must report.

Each import runs in a subprocess that migrates a fresh database the way ``callbridge db upgrade``
does, creates a campaign through ``campaigns.lifecycle`` and calls ``import_contacts`` (the code
behind ``callbridge import`` and the upload API). Only ``import_contacts`` is timed; memory is the
summed RSS of that process and its children (the parsing pool), sampled while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import Figure

SEED = 20261121
INVALID_SHARE = 0.05
DUPLICATE_SHARE = 0.02
PEAK_MB_TARGET = 300
WALL_RATIO_TARGET = 0.6
LINEARITY_TOLERANCE = 0.10
_SAMPLE_SECONDS = 0.05

_US_AREAS = (201, 212, 213, 305, 312, 404, 415, 503, 512, 617, 646, 702, 713, 718, 773, 818)
_GB_PREFIXES = ("20 7", "20 8", "161 4", "121 4", "131 4", "7400 ", "7500 ", "7900 ")
_DE_PREFIXES = ("30", "40", "89", "69", "221", "151", "160", "170", "176")
_INVALID = (
    "",
    "n/a",
    "unknown",
    "555-1234",
    "(123) 456-7890",
    "+44 20 7946 09",
    "+49 30 1",
    "0000000",
    "+1 (415) 555",
    "call me",
)
_FIRST = ("Ava", "Ben", "Chloé", "Dieter", "Emma", "Finn", "Grace", "Hugo", "Isla", "Jonas")
_LAST = ("Smith", "Müller", "Jones", "Schmidt", "Brown", "Fischer", "Taylor", "Weber")
_CITY = ("Boston", "London", "Berlin", "Austin", '"Frankfurt, Main"', "Leeds", "Köln")


# --- the file ---------------------------------------------------------------------------------


def _us(n: int, style: int) -> str:
    area = _US_AREAS[n % len(_US_AREAS)]
    rest = n // len(_US_AREAS)
    exchange, line = 200 + rest // 10_000 % 800, rest % 10_000
    return (
        f"({area}) {exchange}-{line:04d}",
        f"{area}-{exchange}-{line:04d}",
        f"+1 {area} {exchange} {line:04d}",
        f"{area}.{exchange}.{line:04d}",
        f"1{area}{exchange}{line:04d}",
    )[style % 5]


def _gb(n: int, style: int) -> str:
    prefix = _GB_PREFIXES[n % len(_GB_PREFIXES)]
    digits = 10 - len(prefix.replace(" ", ""))
    tail = f"{n // len(_GB_PREFIXES) % 10**digits:0{digits}d}"
    body = f"{prefix}{tail[:3]} {tail[3:]}" if not prefix.endswith(" ") else prefix + tail
    return (f"+44 {body}", f"+44 (0){body}", f"+44{body.replace(' ', '')}")[style % 3]


def _de(n: int, style: int) -> str:
    prefix = _DE_PREFIXES[n % len(_DE_PREFIXES)]
    digits = 11 - len(prefix) if prefix.startswith("1") else 8
    tail = f"{n // len(_DE_PREFIXES) % 10**digits:0{digits}d}"
    return (f"+49 {prefix} {tail}", f"+49 (0){prefix} {tail}", f"+49-{prefix}-{tail}")[style % 3]


_COUNTRIES = (_us, _gb, _de)
# Mostly US numbers, as a US default region suggests.
_COUNTRY_WEIGHTS = (3, 1, 1)


def write_csv(path: Path, rows: int, seed: int = SEED) -> None:
    """``rows`` data rows; the same seed gives the same file, and a shorter file is a prefix."""
    rng = random.Random(seed)
    # A bijection (multiplying by a prime, modulo a range no prefix exhausts) keeps numbers
    # distinct unless a row repeats one on purpose.
    counters = [0] * len(_COUNTRIES)
    recent: list[tuple[int, int]] = []
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("phone_number,id,first_name,last_name,city\n")
        for i in range(rows):
            draw = rng.random()
            if draw < INVALID_SHARE:
                phone = rng.choice(_INVALID)
            elif draw < INVALID_SHARE + DUPLICATE_SHARE and recent:
                country, n = rng.choice(recent)
                phone = _COUNTRIES[country](n, rng.randrange(5))
            else:
                country = rng.choices(range(len(_COUNTRIES)), _COUNTRY_WEIGHTS)[0]
                counters[country] += 1
                n = counters[country] * 7_919 % 9_999_991
                phone = _COUNTRIES[country](n, rng.randrange(5))
                if len(recent) < 50_000:
                    recent.append((country, n))
                else:
                    recent[rng.randrange(50_000)] = (country, n)
            if "," in phone:
                phone = f'"{phone}"'
            out.write(
                f"{phone},c{i},{rng.choice(_FIRST)},{rng.choice(_LAST)},{rng.choice(_CITY)}\n"
            )


# --- the subprocesses -------------------------------------------------------------------------


def _baseline_main(csv_path: str, result_path: str) -> None:
    import phonenumbers

    with open(csv_path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        phone = next(reader).index("phone_number")
        numbers = [record[phone] for record in reader]
    fmt = phonenumbers.PhoneNumberFormat.E164
    found: list[str | None] = []
    cpu = time.process_time()
    started = time.perf_counter()
    for raw in numbers:
        try:
            number = phonenumbers.parse(raw, "US")
        except phonenumbers.NumberParseException:
            found.append(None)
            continue
        found.append(
            phonenumbers.format_number(number, fmt)
            if phonenumbers.is_valid_number(number)
            else None
        )
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    # The number work the product does on top (number type for premium rate, time zones), in
    # the same process over the same numbers: what the parsing processes cannot avoid.
    from campaigns.phones import normalize_many

    product_cpu = time.process_time()
    normalize_many(numbers, "US")
    product_cpu = time.process_time() - product_cpu
    # What a correct import must report, from plain phonenumbers (the file has no blank records,
    # no premium-rate numbers and no do-not-call list).
    seen: set[str] = set()
    invalid = duplicates = 0
    for e164 in found:
        if e164 is None:
            invalid += 1
        elif e164 in seen:
            duplicates += 1
        else:
            seen.add(e164)
    Path(result_path).write_text(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "normalize_cpu_seconds": product_cpu,
                "rows": len(numbers),
                "accepted": len(seen),
                "invalid": invalid,
                "duplicates": duplicates,
            }
        )
    )


def _import_main(database_url: str, csv_path: str, result_path: str) -> None:
    from sqlalchemy import func, select

    from bridge.migrate import upgrade_to_head
    from bridge.telephony.factory import registered
    from campaigns.db import make_engine, make_sessionmaker
    from campaigns.intake.contacts import import_contacts
    from campaigns.lifecycle import CampaignSpec, create_campaign
    from campaigns.models import Contact

    async def run(source: Any) -> dict[str, Any]:
        engine = make_engine(database_url)
        try:
            await upgrade_to_head(engine)
            sm = make_sessionmaker(engine)
            connections = {name: c.needs for name, c in registered().items()}
            campaign = await create_campaign(sm, CampaignSpec(name="B1 intake"), connections)
            cpu = _cpu()
            started = time.perf_counter()
            report = await import_contacts(
                sm, campaign.id, source, default_region=campaign.default_region
            )
            seconds = time.perf_counter() - started
            # The pool's processes have ended by now, so their time is in RUSAGE_CHILDREN.
            cpu = {key: value - cpu[key] for key, value in _cpu().items()}
            async with sm() as session:
                stored = await session.scalar(
                    select(func.count())
                    .select_from(Contact)
                    .where(Contact.campaign_id == campaign.id)
                )
        finally:
            await engine.dispose()
        reasons: dict[str, int] = {}
        for error in report.errors:
            reasons[error.reason] = reasons.get(error.reason, 0) + 1
        return {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "rows": report.rows,
            "accepted": report.accepted,
            "rejected": report.rejected,
            "stored": stored,
            "reported_errors": len(report.errors),
        }

    with open(csv_path, "rb") as source:
        result = asyncio.run(run(source))
    Path(result_path).write_text(json.dumps(result))


def _cpu() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "main": own.ru_utime + own.ru_stime,
        "parsing_processes": children.ru_utime + children.ru_stime,
    }


# Started with -c rather than -m: processes spawned by the import (the parsing pool) re-import
# the main module, and this harness is not what they should carry.
_ENTRY = "import sys; from bench.b1_intake import main; main(sys.argv[1:])"


def _measured(args: list[str], result_path: Path) -> tuple[dict[str, Any], float]:
    """Run ``args`` in a subprocess; its result and the peak RSS (MB) of it and its children.

    The result gets ``peak_mb_by_process`` (the main process first) and ``load_average``.
    """
    load = os.getloadavg()[0]
    process = subprocess.Popen([sys.executable, "-c", _ENTRY, *args])
    watched = psutil.Process(process.pid)
    peak, at_peak = 0, [0]
    while process.poll() is None:
        try:
            command = watched.cmdline()
            tree = [watched, *watched.children(recursive=True)]
            sizes = []
            for member in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    # A child caught between fork and exec (a pool process being spawned) shows
                    # the parent's pages, which it shares: counting them would count them twice.
                    if member is not watched and member.cmdline() == command:
                        continue
                    sizes.append(member.memory_info().rss)
            if sum(sizes) > peak:
                peak, at_peak = sum(sizes), sizes
        except psutil.NoSuchProcess:
            pass
        time.sleep(_SAMPLE_SECONDS)
    if process.returncode != 0:
        raise RuntimeError(f"b1 subprocess {args[0]} exited with {process.returncode}")
    result = json.loads(result_path.read_text())
    result["peak_mb_by_process"] = [round(size / 1024**2, 1) for size in at_peak]
    result["load_average"] = (load + os.getloadavg()[0]) / 2
    return result, peak / 1024**2


# --- the benchmark ----------------------------------------------------------------------------


def run(ctx: Any) -> list[Figure]:
    large = ctx.scale(1_000_000, 20_000)
    small = large // 10
    files = {}
    for rows in (small, large):
        files[rows] = ctx.workdir / f"b1_{rows}.csv"
        write_csv(files[rows], rows)

    expected: dict[int, dict[str, Any]] = {}
    baseline_mb: dict[int, float] = {}
    for rows in (small, large):
        out = ctx.workdir / f"b1_baseline_{rows}.json"
        expected[rows], baseline_mb[rows] = _measured(["baseline", str(files[rows]), str(out)], out)
    baseline_s = expected[large]["seconds"]
    print(
        f"   baseline: {large} numbers in {baseline_s:.2f} s "
        f"({baseline_s / large * 1e6:.1f} us/number), {baseline_mb[large]:.0f} MB",
        flush=True,
    )

    figures: list[Figure] = []
    for kind in ctx.databases:
        measured: dict[int, dict[str, Any]] = {}
        peaks: dict[int, float] = {}
        for rows in (small, large):
            out = ctx.workdir / f"b1_import_{kind}_{rows}.json"
            with ctx.database(kind) as url:
                measured[rows], peaks[rows] = _measured(
                    ["import", url, str(files[rows]), str(out)], out
                )
            got, want = measured[rows], expected[rows]
            problems = _count_problems(got, want)
            if problems:
                raise AssertionError(f"B1 {kind} {rows} rows: {'; '.join(problems)}")
            print(
                f"   {kind} {rows} rows: {got['seconds']:.2f} s, {peaks[rows]:.0f} MB, "
                f"accepted {got['accepted']} rejected {got['rejected']}",
                flush=True,
            )
        figures += _figures(kind, small, large, measured, peaks, expected, baseline_mb)
    return figures


def _count_problems(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    checks = {
        "rows": (got["rows"], want["rows"]),
        "accepted": (got["accepted"], want["accepted"]),
        "rejected": (got["rejected"], want["invalid"] + want["duplicates"]),
        "stored": (got["stored"], want["accepted"]),
    }
    return [f"{name} {a} != expected {b}" for name, (a, b) in checks.items() if a != b]


def _figures(
    kind: str,
    small: int,
    large: int,
    measured: dict[int, dict[str, Any]],
    peaks: dict[int, float],
    expected: dict[int, dict[str, Any]],
    baseline_mb: dict[int, float],
) -> list[Figure]:
    got, base = measured[large], expected[large]
    wall, baseline = got["seconds"], base["seconds"]
    ratio = wall / baseline
    per_small = measured[small]["seconds"] / small * 1e6
    per_large = wall / large * 1e6
    growth = per_large / per_small
    cores = len(os.sched_getaffinity(0))
    cpu = got["cpu_seconds"]
    us = {
        "baseline_cpu": base["cpu_seconds"] / large * 1e6,
        "normalize_cpu": base["normalize_cpu_seconds"] / large * 1e6,
        "main_cpu": cpu["main"] / large * 1e6,
        "pool_cpu": cpu["parsing_processes"] / large * 1e6,
    }
    floor = us["normalize_cpu"] / cores / us["baseline_cpu"]
    cpu_large = _cpu_per_row(measured[large], large)
    cpu_small = _cpu_per_row(measured[small], small)
    cpu_floor = (us["main_cpu"] + us["pool_cpu"]) / cores / us["baseline_cpu"]
    wall_notes = (
        f"CPU per row: baseline loop {us['baseline_cpu']:.1f} us; the import "
        f"{us['main_cpu'] + us['pool_cpu']:.1f} us ({us['main_cpu']:.1f} us main process: CSV, "
        f"rows, database driver; {us['pool_cpu']:.1f} us parsing processes)"
        + (
            ", plus the PostgreSQL server's own CPU on the same cores"
            if kind == "postgresql"
            else ""
        )
        + f". The product's number checks alone (parse, type for validity and premium rate, "
        f"time zones, E.164) cost {us['normalize_cpu']:.1f} us/number in one process, so even "
        f"spread over {cores} cores with nothing else to do they take {floor:.2f}x the baseline; "
        f"the import's measured CPU over {cores} cores gives {cpu_floor:.2f}x. "
        f"Load average during the run: {got['load_average']:.1f} on {cores} CPUs (shared machine)."
    )
    counts = {name: base[name] for name in ("rows", "accepted", "invalid", "duplicates")}
    return [
        Figure(
            bench="B1",
            what=f"import {large:,} CSV rows: wall time",
            value=wall,
            unit="s",
            baseline=baseline,
            baseline_what="phonenumbers parse+is_valid+E.164 loop, 1 process",
            database=kind,
            target=f"ratio <= {WALL_RATIO_TARGET}",
            met=ratio <= WALL_RATIO_TARGET,
            notes="" if ratio <= WALL_RATIO_TARGET else wall_notes,
            extra={"counts_checked": counts, "us_per_row": per_large, "cpu_us_per_row": us},
        ),
        Figure(
            bench="B1",
            what=f"import {large:,} CSV rows: peak RSS (process + children)",
            value=peaks[large],
            unit="MB",
            baseline=baseline_mb[large],
            baseline_what="peak RSS of the baseline loop process",
            database=kind,
            target=f"value <= {PEAK_MB_TARGET} MB",
            met=peaks[large] <= PEAK_MB_TARGET,
            notes=(
                f"at the peak, MB by process (main first): {got['peak_mb_by_process']}; "
                f"{small:,} rows: {peaks[small]:.0f} MB"
            ),
            extra={f"peak_mb_{small}": peaks[small]},
        ),
        Figure(
            bench="B1",
            what=f"CPU per row (import process + pool) at {large:,} vs {small:,} rows",
            value=cpu_large,
            unit="us/row",
            baseline=cpu_small,
            baseline_what=f"CPU per row at {small:,} rows, same run",
            database=kind,
            target=f"ratio within 1 +- {LINEARITY_TOLERANCE}",
            met=abs(cpu_large / cpu_small - 1) <= LINEARITY_TOLERANCE,
            notes=(
                "CPU time, not wall time: the machine is shared, and wall time per row moved with "
                f"the other tenants' load (load average {measured[large]['load_average']:.1f} "
                f"during {large:,} rows, {measured[small]['load_average']:.1f} during {small:,}). "
                f"Wall per row: {per_large:.1f} us at {large:,} rows, {per_small:.1f} us at "
                f"{small:,} (ratio {growth:.2f}). CPU per row in the main process "
                f"{_main_cpu_per_row(measured[large], large):.1f} us and "
                f"{_main_cpu_per_row(measured[small], small):.1f} us, in the pool "
                f"{_pool_cpu_per_row(measured[large], large):.1f} us and "
                f"{_pool_cpu_per_row(measured[small], small):.1f} us."
                + (
                    " The PostgreSQL server's CPU is not counted."
                    if kind == "postgresql"
                    else " SQLite's own B-tree work runs in the import process and is counted."
                )
            ),
            extra={"wall_us_per_row": {str(large): per_large, str(small): per_small}},
        ),
    ]


def _cpu_per_row(result: dict[str, Any], rows: int) -> float:
    return sum(result["cpu_seconds"].values()) / rows * 1e6


def _main_cpu_per_row(result: dict[str, Any], rows: int) -> float:
    return float(result["cpu_seconds"]["main"]) / rows * 1e6


def _pool_cpu_per_row(result: dict[str, Any], rows: int) -> float:
    return float(result["cpu_seconds"]["parsing_processes"]) / rows * 1e6


def main(argv: list[str]) -> None:
    command, *rest = argv
    if command == "baseline":
        _baseline_main(*rest)
    elif command == "import":
        _import_main(*rest)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
