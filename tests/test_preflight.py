"""`callbridge check` against the sandbox, as a user runs it before a first real campaign: Twilio
mode pointed at the sandbox carrier and agent of a running service. A good set-up passes every
check; each broken one is named by one line that says what to change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.settings import (
    SANDBOX_ACCOUNT_SID,
    SANDBOX_AUTH_TOKEN,
    SANDBOX_ELEVENLABS_API_KEY,
)
from tests.service import Service, free_port


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A sandbox-mode service: its carrier stands in for Twilio, its agent for ElevenLabs."""
    workdir = tmp_path_factory.mktemp("preflight")
    running = Service(f"sqlite:///{workdir / 'sandbox.db'}", workdir).start()
    try:
        yield running
    finally:
        running.stop()


def good_setup(service: Service, workdir: Path) -> dict[str, str]:
    return {
        "CALLBRIDGE_DATABASE_URL": f"sqlite:///{workdir / 'checked.db'}",
        "CALLBRIDGE_TELEPHONY": "twilio",
        "TWILIO_ACCOUNT_SID": SANDBOX_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": SANDBOX_AUTH_TOKEN,
        "CALLBRIDGE_TWILIO_API_URL": f"{service.url}/sandbox",
        "CALLBRIDGE_FROM_NUMBER": "+15005550006",
        "ELEVENLABS_API_KEY": SANDBOX_ELEVENLABS_API_KEY,
        "CALLBRIDGE_ELEVENLABS_URL": f"{service.url}/sandbox/elevenlabs",
        "ELEVENLABS_WEBHOOK_SECRET": "wsec_preflight_test",
        "CALLBRIDGE_PUBLIC_URL": service.url,
    }


def check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CALLBRIDGE_", "TWILIO_"))}
    clean = {k: v for k, v in clean.items() if not k.startswith("ELEVENLABS_")}
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", "check", *args],
        env={**clean, **{k: v for k, v in env.items() if v is not None}},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_good_setup_passes_every_check(service: Service, tmp_path: Path) -> None:
    done = check(good_setup(service, tmp_path), "--agent", "agent_ready", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    findings = json.loads(done.stdout)
    assert {f["check"] for f in findings} == {
        "twilio_account",
        "from_number",
        "voice_url",
        "agent",
        "webhook_secret",
        "public_url",
    }
    assert all(f["ok"] and not f["warning"] for f in findings), findings
    text = check(good_setup(service, tmp_path), "--agent", "agent_ready")
    assert text.returncode == 0
    assert len(text.stdout.splitlines()) == 6
    assert all(line.startswith("ok") for line in text.stdout.splitlines()), text.stdout


@pytest.mark.parametrize(
    ("broken", "change", "agent", "expected", "status"),
    [
        ("wrong token", {"TWILIO_AUTH_TOKEN": "not-the-token"}, "agent_ready",
         "Twilio refused account", 1),
        ("foreign from-number", {"CALLBRIDGE_FROM_NUMBER": "+15005550009"}, "agent_ready",
         "+15005550009 is not a number of Twilio account", 1),
        ("number not pointing at callbridge", {"CALLBRIDGE_FROM_NUMBER": "+15005550007"},
         "agent_ready", "The voice URL of +15005550007 goes to https://demo.twilio.com/", 1),
        ("unknown agent", {}, "agent_unknown_x", "Agent agent_unknown_x does not exist", 1),
        ("PCM agent", {}, "agent_pcm_16000",
         "Agent agent_pcm_16000 speaks pcm_16000 and listens in pcm_16000: callbridge converts", 0),
        ("no webhook secret", {"ELEVENLABS_WEBHOOK_SECRET": ""}, "agent_ready",
         "ELEVENLABS_WEBHOOK_SECRET is not set", 1),
        ("unreachable public URL", {"CALLBRIDGE_PUBLIC_URL": "http://127.0.0.1:{port}"},
         "agent_ready", "cannot be reached", 1),
    ],
)  # fmt: skip
def test_each_broken_setup_is_named_by_one_line(
    service: Service,
    tmp_path: Path,
    broken: str,
    change: dict[str, str],
    agent: str,
    expected: str,
    status: int,
) -> None:
    env = good_setup(service, tmp_path)
    env.update({k: v.format(port=free_port()) for k, v in change.items()})
    done = check(env, "--agent", agent)
    lines = done.stdout.splitlines()
    problems = [line for line in lines if not line.startswith("ok")]
    assert len(problems) == 1, (broken, done.stdout, done.stderr)
    assert expected in problems[0], (broken, problems[0])
    assert done.returncode == status, (broken, done.returncode, done.stderr)
