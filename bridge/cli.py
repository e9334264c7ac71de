"""`callbridge serve | demo | import | db upgrade`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from aiohttp import web

from bridge.api_cli import add_api_commands
from bridge.settings import Settings
from campaigns.db import make_engine


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except ValueError as exc:
        print(f"callbridge: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callbridge", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="run the service (and the sandbox, in sandbox mode)")
    serve.add_argument("--host", default=None, help="listen address (CALLBRIDGE_HOST)")
    serve.add_argument("--port", type=int, default=None, help="listen port (CALLBRIDGE_PORT)")
    serve.set_defaults(handler=_serve)

    sandbox = commands.add_parser(
        "sandbox", help="run the sandbox carrier on its own (shared by several service nodes)"
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="listen address")
    sandbox.add_argument("--port", type=int, default=8090, help="listen port")
    sandbox.set_defaults(handler=_sandbox)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(title="db commands")
    upgrade = db_commands.add_parser("upgrade", help="migrate the database to the latest schema")
    upgrade.set_defaults(handler=_db_upgrade)

    intake = commands.add_parser("import", help="validate (and import) a contacts CSV")
    intake.add_argument("file", type=Path)
    intake.add_argument("--campaign", help="campaign id to import into (not with --dry-run)")
    intake.add_argument("--dry-run", action="store_true", help="validate only, store nothing")
    intake.add_argument("--json", action="store_true", help="print the report as JSON")
    intake.add_argument("--default-region", default="US", help="region for national numbers")
    intake.add_argument("--phone-column", default="phone_number")
    intake.set_defaults(handler=_import)

    demo = commands.add_parser("demo", help="run a whole campaign against the sandbox")
    demo.add_argument("--contacts", type=Path, help="a CSV to call (default: the bundled example)")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(handler=_demo)

    add_api_commands(commands)  # keys, export
    return parser


def configure_logging(level: int = logging.INFO, settings: Settings | None = None) -> None:
    from bridge.ops import logs

    settings = settings or Settings()
    secrets = [settings.twilio_auth_token, *settings.api_keys]
    secrets += [getattr(settings, name, None) for name in _SECRET_SETTINGS]
    logs.configure(settings.log_format, secrets, level)


# Settings holding secrets that must never reach a log line.
_SECRET_SETTINGS = ("elevenlabs_api_key", "elevenlabs_webhook_secret", "dashboard_secret")


def _serve(args: argparse.Namespace) -> int:
    from bridge.app import create_app

    settings = Settings.from_env()
    settings = settings.with_(
        host=args.host or settings.host, port=args.port if args.port is not None else settings.port
    )
    configure_logging(settings=settings)
    logging.getLogger(__name__).info(
        "callbridge serving on %s:%s (telephony: %s, public URL %s)",
        settings.host,
        settings.port,
        settings.telephony,
        settings.base_url,
    )
    from bridge.ops.serving import serve
    from bridge.sandbox.credentials import installation_settings

    async def run() -> None:
        resolved = await installation_settings(settings)
        # The installation's own secrets are secrets too: kept out of the logs by value.
        configure_logging(settings=resolved)
        # Our own signal handling: SIGTERM drains (no new calls, live ones finish) before exiting.
        await serve(create_app(resolved), resolved.host, resolved.port)

    asyncio.run(run())
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from bridge.ops.logs import RedactingAccessLogger
    from bridge.sandbox.server import create_sandbox_app

    settings = Settings.from_env()
    configure_logging(settings=settings)
    logging.getLogger(__name__).info("sandbox carrier on %s:%s", args.host, args.port)
    web.run_app(
        create_sandbox_app(settings, args.host),
        host=args.host,
        port=args.port,
        print=None,
        access_log_class=RedactingAccessLogger,
    )
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from bridge.migrate import upgrade_to_head

    async def run() -> None:
        engine = make_engine(Settings.from_env().database_url)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    print("database is at the latest schema")
    return 0


def _import(args: argparse.Namespace) -> int:
    from bridge.intake_cli import run_import

    return run_import(args)


def _demo(args: argparse.Namespace) -> int:
    from bridge.demo import run_demo

    return asyncio.run(run_demo(contacts=args.contacts, as_json=args.json))


if __name__ == "__main__":
    raise SystemExit(main())
