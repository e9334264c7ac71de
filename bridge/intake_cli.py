"""`callbridge import`: the intake report for a CSV, optionally storing its contacts."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bridge.settings import Settings
from campaigns.db import make_engine, make_sessionmaker
from campaigns.intake.contacts import dry_run as validate
from campaigns.intake.contacts import import_contacts
from campaigns.intake.errors import ImportRefused
from campaigns.intake.report import ImportReport
from campaigns.lifecycle import get_campaign
from campaigns.phones import number_types_of


def run_import(
    file: Path,
    *,
    campaign: str | None,
    dry_run: bool,
    as_json: bool,
    default_region: str,
    phone_column: str,
) -> int:
    if dry_run == bool(campaign):
        raise ValueError("give either --dry-run or --campaign ID")
    try:
        with file.open("rb") as source:
            if dry_run:
                report = validate(source, default_region=default_region, phone_column=phone_column)
            else:
                assert campaign is not None
                report = asyncio.run(_store(campaign, phone_column, source))
    except FileNotFoundError as exc:
        raise ValueError(f"no such file: {file}") from exc
    except ImportRefused as exc:
        print(f"callbridge: file refused, nothing imported: {exc}", file=sys.stderr)
        return 1
    _print(report, as_json=as_json)
    return 0


async def _store(campaign_id: str, phone_column: str, source: Any) -> ImportReport:
    engine = make_engine(Settings.from_env().database_url)
    sm = make_sessionmaker(engine)
    try:
        async with sm() as session:
            campaign = await get_campaign(session, campaign_id)
        return await import_contacts(
            sm,
            campaign.id,
            source,
            default_region=campaign.default_region,
            phone_column=phone_column,
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
