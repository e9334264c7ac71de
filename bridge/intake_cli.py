"""`callbridge import`: the intake report for a CSV, optionally storing its contacts."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from bridge.settings import Settings
from campaigns.db import make_engine, make_sessionmaker
from campaigns.importer import ImportRefused, ImportReport, dry_run, import_contacts
from campaigns.lifecycle import get_campaign
from campaigns.phones import number_types_of


def run_import(args: argparse.Namespace) -> int:
    if args.dry_run == bool(args.campaign):
        raise ValueError("give either --dry-run or --campaign ID")
    try:
        with args.file.open("rb") as source:
            if args.dry_run:
                report = dry_run(
                    source, default_region=args.default_region, phone_column=args.phone_column
                )
            else:
                report = asyncio.run(_store(args, source))
    except FileNotFoundError as exc:
        raise ValueError(f"no such file: {args.file}") from exc
    except ImportRefused as exc:
        print(f"callbridge: file refused, nothing imported: {exc}", file=sys.stderr)
        return 1
    _print(report, as_json=args.json)
    return 0


async def _store(args: argparse.Namespace, source: Any) -> ImportReport:
    engine = make_engine(Settings.from_env().database_url)
    sm = make_sessionmaker(engine)
    try:
        async with sm() as session:
            campaign = await get_campaign(session, args.campaign)
        return await import_contacts(
            sm,
            campaign.id,
            source,
            default_region=campaign.default_region,
            phone_column=args.phone_column,
            number_types=number_types_of(campaign.allowed_number_types),
        )
    finally:
        await engine.dispose()


def _print(report: ImportReport, *, as_json: bool) -> None:
    body = report.to_dict()
    if as_json:
        print(json.dumps(body, indent=2))
        return
    print(f"rows {body['rows']}  accepted {body['accepted']}  rejected {body['rejected']}")
    for error in body["errors"]:
        print(f"  row {error['row']}: {error['reason']} ({error['value']!r})")
