"""`python -m bench`: run the benchmarks and write bench/results/report.{json,md}."""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.common import Context, Figure, machine, postgres_server, write_report

BENCHMARKS = {
    "B1": "bench.b1_intake",
    "B2": "bench.b2_lifecycles",
    "B3": "bench.b3_callbacks",
    "B4": "bench.b4_pacing",
    "B5": "bench.b5_reminders",
    "B6": "bench.b6_relay",
    "B7": "bench.b7_memory",
    "B8": "bench.b8_soak",
    "B9": "bench.b9_import_latency",
    "B10": "bench.b10_statements",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated ids, e.g. B1,B4")
    parser.add_argument("--db", default="sqlite,postgresql", help="databases to measure on")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--soak-minutes", type=float, default=None, help="B8: minutes per run")
    parser.add_argument(
        "--soak-modes", default="", help="B8: apart,inprocess (carrier apart, sandbox mounted)"
    )
    parser.add_argument(
        "--soak-trace", action="store_true", help="B8: name the growing sites (tracemalloc)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)

    chosen = [b.strip().upper() for b in args.only.split(",") if b.strip()] or list(BENCHMARKS)
    unknown = [b for b in chosen if b not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    meta = {**machine(), "quick": args.quick, "benchmarks": chosen}
    figures: list[Figure] = []
    failed: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="callbridge-bench-") as workdir:
        ctx = Context(
            out=args.out,
            databases=[d.strip() for d in args.db.split(",") if d.strip()],
            quick=args.quick,
            postgres_server=postgres_server(),
            workdir=Path(workdir),
            soak_minutes=args.soak_minutes,
            soak_modes=args.soak_modes,
            soak_trace=args.soak_trace,
        )
        for bench_id in chosen:
            print(f"== {bench_id}", flush=True)
            module = importlib.import_module(BENCHMARKS[bench_id])
            try:
                produced = module.run(ctx)
            except Exception:
                traceback.print_exc()
                failed.append(bench_id)
                continue
            for figure in produced:
                print(
                    f"   {figure.database or '':10} {figure.what}: {figure.value:.4g} "
                    f"{figure.unit} (ratio {figure.ratio}) met={figure.met}",
                    flush=True,
                )
            figures.extend(produced)
            meta["seconds"] = time.monotonic() - started
            write_report(args.out, figures, {**meta, "failed": failed})
    meta["seconds"] = time.monotonic() - started
    json_path, md_path = write_report(args.out, figures, {**meta, "failed": failed})
    print(f"report: {md_path} and {json_path}")
    if failed:
        print(f"benchmarks that did not run to the end: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
