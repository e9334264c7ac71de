"""`callbridge`: the command line (serve, sandbox, db, import, demo, keys, export, and the campaign
lifecycle against a running service)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bridge.api_cli import export, keys
from bridge.cli_common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageFailure, emit, json_option
from bridge.cli_remote import call, campaign, dnc, run, webhooks

if TYPE_CHECKING:
    from bridge.settings import Settings

PROG = "callbridge"
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
def cli() -> None:
    """Self-hosted outbound calling: campaigns of Twilio calls answered by ElevenLabs agents.

    Commands that talk to a running service take --url (CALLBRIDGE_URL, default
    http://127.0.0.1:8080) and read the API key from CALLBRIDGE_API_KEY. Every command takes
    --json (one JSON document on stdout, messages on stderr). Exit status: 0 done, 1 failure,
    2 usage error, 3 campaign ended with attention items.

    \b
    Example:
      callbridge serve --port 8080 &
      callbridge run contacts.csv --agent agent_1 --yes
    """


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("callbridge: aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except ValueError as exc:
        # The older commands' own checks: a usage error, shown as one line.
        click.echo(f"callbridge: {exc}", err=True)
        return EXIT_USAGE
    return 0


def configure_logging(level: int = logging.INFO, settings: Settings | None = None) -> None:
    from bridge.ops import logs
    from bridge.settings import Settings

    settings = settings or Settings()
    secrets = [settings.twilio_auth_token, *settings.api_keys]
    secrets += [getattr(settings, name, None) for name in _SECRET_SETTINGS]
    logs.configure(settings.log_format, secrets, level)


# Settings holding secrets that must never reach a log line.
_SECRET_SETTINGS = ("elevenlabs_api_key", "elevenlabs_webhook_secret", "dashboard_secret")


@cli.command()
@click.option("--host", default=None, help="listen address (CALLBRIDGE_HOST)")
@click.option("--port", type=int, default=None, help="listen port (CALLBRIDGE_PORT)")
@json_option("log one JSON object per line (CALLBRIDGE_LOG_FORMAT=json)")
def serve(host: str | None, port: int | None, as_json: bool) -> None:
    """Run the service (and the sandbox, in sandbox mode).

    \b
    Example:
      CALLBRIDGE_API_KEYS=secret-key callbridge serve --port 8080
    """
    from bridge.app import create_app
    from bridge.settings import Settings

    settings = Settings.from_env()
    settings = settings.with_(
        host=host or settings.host, port=port if port is not None else settings.port
    )
    if as_json:
        settings = settings.with_(log_format="json")
    configure_logging(settings=settings)
    logging.getLogger(__name__).info(
        "callbridge serving on %s:%s (telephony: %s, public URL %s)",
        settings.host,
        settings.port,
        settings.telephony,
        settings.base_url,
    )
    from bridge.ops.serving import serve as serve_app
    from bridge.sandbox.credentials import installation_settings

    async def run_service() -> None:
        resolved = await installation_settings(settings)
        # The installation's own secrets are secrets too: kept out of the logs by value.
        configure_logging(settings=resolved)
        # Our own signal handling: SIGTERM drains (no new calls, live ones finish) before exiting.
        await serve_app(create_app(resolved), resolved.host, resolved.port)

    asyncio.run(run_service())


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="listen address")
@click.option("--port", type=int, default=8090, show_default=True, help="listen port")
@json_option("log one JSON object per line (CALLBRIDGE_LOG_FORMAT=json)")
def sandbox(host: str, port: int, as_json: bool) -> None:
    """Run the sandbox carrier on its own (shared by several service nodes).

    \b
    Example:
      callbridge sandbox --port 8090
    """
    from aiohttp import web

    from bridge.ops.logs import RedactingAccessLogger
    from bridge.sandbox.server import create_sandbox_app
    from bridge.settings import Settings

    settings = Settings.from_env()
    if as_json:
        settings = settings.with_(log_format="json")
    configure_logging(settings=settings)
    logging.getLogger(__name__).info("sandbox carrier on %s:%s", host, port)
    web.run_app(
        create_sandbox_app(settings, host),
        host=host,
        port=port,
        print=None,
        access_log_class=RedactingAccessLogger,
    )


@cli.group()
def db() -> None:
    """Database schema (CALLBRIDGE_DATABASE_URL).

    \b
    Example:
      callbridge db upgrade
    """


@db.command("upgrade")
@json_option()
def db_upgrade(as_json: bool) -> None:
    """Migrate the database to the latest schema.

    \b
    Example:
      CALLBRIDGE_DATABASE_URL=postgresql://user:pass@host/db callbridge db upgrade
    """
    from bridge.migrate import upgrade_to_head
    from bridge.settings import Settings
    from campaigns.db import make_engine

    async def upgrade() -> None:
        engine = make_engine(Settings.from_env().database_url)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    asyncio.run(upgrade())
    if as_json:
        click.echo(json.dumps({"schema": "latest"}))
    else:
        click.echo("database is at the latest schema")


@cli.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--campaign", help="campaign id to import into (not with --dry-run)")
@click.option("--dry-run", is_flag=True, help="validate only, store nothing")
@json_option("print the report as JSON")
@click.option(
    "--default-region", default="US", show_default=True, help="region for national numbers"
)
@click.option("--phone-column", default="phone_number", show_default=True)
def import_(
    file: Path,
    campaign: str | None,
    dry_run: bool,
    as_json: bool,
    default_region: str,
    phone_column: str,
) -> None:
    """Validate (and import) a contacts CSV, directly on the database.

    \b
    Example:
      callbridge import contacts.csv --dry-run
    """
    from bridge.intake_cli import run_import

    code = run_import(
        file,
        campaign=campaign,
        dry_run=dry_run,
        as_json=as_json,
        default_region=default_region,
        phone_column=phone_column,
    )
    sys.exit(code)


@cli.command()
@click.option(
    "--contacts",
    type=click.Path(path_type=Path),
    help="a CSV to call (default: the bundled example)",
)
@json_option("print the summary as JSON")
def demo(contacts: Path | None, as_json: bool) -> None:
    """Run a whole campaign against the sandbox, in one process.

    \b
    Example:
      callbridge demo --contacts my-contacts.csv
    """
    from bridge.demo import run_demo

    sys.exit(asyncio.run(run_demo(contacts=contacts, as_json=as_json)))


@cli.command()
@click.option(
    "--agent",
    "agents",
    multiple=True,
    help="an agent id to check (repeatable; default: the agents of open campaigns)",
)
@click.option("--from", "from_number", help="the caller id (default: CALLBRIDGE_FROM_NUMBER)")
@json_option()
def check(agents: tuple[str, ...], from_number: str | None, as_json: bool) -> None:
    """Check the set-up before a first real campaign, against the providers themselves.

    The Twilio account answers to its credentials, the caller id belongs to it, each agent
    exists and speaks audio callbridge can relay, the post-call webhook secret is set, and the
    public URL answers. One line per check; exit status 0 when nothing stops a campaign
    (warnings included), 1 otherwise.

    \b
    Example:
      callbridge check --agent agent_8301k1x2ab --from +14155550100
    """
    from bridge.preflight import campaign_agents, run_checks
    from bridge.settings import Settings

    settings = Settings.from_env()
    chosen = list(agents) or asyncio.run(campaign_agents(settings))
    findings = asyncio.run(run_checks(settings, agent_ids=chosen, from_number=from_number))

    def human() -> None:
        for finding in findings:
            label = "ok" if finding.ok and not finding.warning else "warn" if finding.ok else "FAIL"
            click.echo(f"{label:4} {finding.message}")

    emit([finding.to_dict() for finding in findings], as_json=as_json, human=human)
    sys.exit(EXIT_OK if all(finding.ok for finding in findings) else EXIT_FAILURE)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh"]))
@json_option()
def completion(shell: str, as_json: bool) -> None:
    """Print the shell completion script for bash or zsh.

    \b
    Example:
      eval "$(callbridge completion bash)"     # in ~/.bashrc
      eval "$(callbridge completion zsh)"      # in ~/.zshrc
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    if completer is None:  # pragma: no cover - both are built into click
        raise UsageFailure(f"no completion for {shell}")
    script = completer(cli, {}, PROG, "_CALLBRIDGE_COMPLETE").source()
    click.echo(json.dumps({"shell": shell, "script": script}) if as_json else script)


cli.add_command(keys)
cli.add_command(export)
cli.add_command(campaign)
cli.add_command(run)
cli.add_command(call)
cli.add_command(dnc)
cli.add_command(webhooks)


if __name__ == "__main__":
    raise SystemExit(main())
