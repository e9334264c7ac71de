"""`callbridge check`: what a real campaign needs, checked before the first one.

Each check asks the provider itself, with the official SDKs, what callbridge would rely on: the
Twilio account answers to its credentials, the caller id belongs to it and sends the calls it
receives (people calling back) to callbridge, each agent exists and speaks audio callbridge can
relay, the post-call webhook secret is set, and the public URL that Twilio and ElevenLabs call
back is reachable. A problem is one line saying what to change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from elevenlabs.client import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError as ElevenLabsError
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from bridge.media.audio_formats import INPUT_SETTING, OUTPUT_SETTING, SUPPORTED, ULAW_8000
from bridge.settings import Settings

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Finding:
    check: str  # twilio_account | from_number | voice_url | agent | webhook_secret | public_url
    ok: bool
    message: str  # what was found, or what to change
    warning: bool = False  # works, but worth changing (an agent whose audio is converted)

    def to_dict(self) -> dict[str, object]:
        return {
            "check": self.check,
            "ok": self.ok,
            "warning": self.warning,
            "message": self.message,
        }


async def campaign_agents(settings: Settings) -> list[str]:
    """The agents of the campaigns not yet over, when no agent is named."""
    from sqlalchemy import select

    from campaigns.db import make_engine
    from campaigns.models import Campaign, CampaignStatus

    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(Campaign.agent_id)
                .where(
                    Campaign.status.not_in([CampaignStatus.COMPLETED, CampaignStatus.CANCELLED]),
                    Campaign.agent_id.is_not(None),
                )
                .distinct()
            )
            return sorted(str(agent) for (agent,) in rows)
    except Exception:  # no database yet, or not reachable: the agents must then be named
        return []
    finally:
        await engine.dispose()


async def run_checks(
    settings: Settings, *, agent_ids: Iterable[str], from_number: str | None
) -> list[Finding]:
    findings = await _twilio(settings, from_number or settings.from_number)
    chosen = list(dict.fromkeys(agent_ids))
    if not chosen:
        findings.append(
            Finding("agent", False, "No agent to check: name one with --agent <agent_id>.")
        )
    for agent_id in chosen:
        findings.append(await _agent(settings, agent_id))
    findings.append(_webhook_secret(settings))
    public = await _public_url(settings)
    if not public.ok:
        # The voice URL is checked against the public URL: with that one wrong, the one line
        # to act on is the public URL's.
        findings = [f for f in findings if f.check != "voice_url" or f.ok]
    findings.append(public)
    return findings


async def _twilio(settings: Settings, from_number: str | None) -> list[Finding]:
    http = AsyncTwilioHttpClient(timeout=TIMEOUT_SECONDS)
    client = Client(settings.twilio_account_sid, settings.twilio_auth_token, http_client=http)
    if settings.twilio_api_base_url:
        client.api.base_url = settings.twilio_api_base_url.rstrip("/")
    sid = settings.twilio_account_sid
    try:
        account = client.api.v2010.accounts(sid)
        try:
            fetched = await account.fetch_async()
        except TwilioRestException as exc:
            if exc.status in (401, 403, 404):
                return [
                    Finding(
                        "twilio_account",
                        False,
                        f"Twilio refused account {sid} with this auth token (HTTP {exc.status}): "
                        "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN to the values shown on "
                        "console.twilio.com.",
                    )
                ]
            raise
        found = [Finding("twilio_account", True, f"Twilio account {sid} ({fetched.status}).")]
        if not from_number:
            found.append(
                Finding(
                    "from_number",
                    False,
                    "No caller id: set CALLBRIDGE_FROM_NUMBER (or give each campaign a "
                    "from_number) to a number of your Twilio account.",
                )
            )
            return found
        owned = await account.incoming_phone_numbers.list_async(phone_number=from_number)
        mine = next((number for number in owned if number.phone_number == from_number), None)
        if mine is not None:
            found.append(Finding("from_number", True, f"{from_number} belongs to {sid}."))
            found.append(_voice_url(settings, from_number, mine.voice_url))
        else:
            found.append(
                Finding(
                    "from_number",
                    False,
                    f"{from_number} is not a number of Twilio account {sid}: buy or port it "
                    "there, or set CALLBRIDGE_FROM_NUMBER to one of the account's numbers.",
                )
            )
        return found
    except (TimeoutError, TwilioRestException, aiohttp.ClientError, OSError) as exc:
        where = settings.twilio_api_base_url or "api.twilio.com"
        return [
            Finding(
                "twilio_account",
                False,
                f"Twilio did not answer at {where} ({type(exc).__name__}): check the network "
                "(and CALLBRIDGE_TWILIO_API_URL if set).",
            )
        ]
    finally:
        await http.close()


def _voice_url(settings: Settings, from_number: str, voice_url: str | None) -> Finding:
    """People call back the number that called them: its calls must reach callbridge."""
    wanted = settings.inbound_url
    if voice_url == wanted:
        return Finding("voice_url", True, f"Calls to {from_number} reach callbridge ({wanted}).")
    where = f"goes to {voice_url}" if voice_url else "is not set"
    return Finding(
        "voice_url",
        False,
        f"The voice URL of {from_number} {where}, so people who call back never reach the "
        f"campaign's agent: set it to {wanted} (HTTP POST) in the number's settings on "
        "console.twilio.com.",
    )


async def _agent(settings: Settings, agent_id: str) -> Finding:
    if not settings.agent_api_key:
        return Finding("agent", False, "No ElevenLabs API key: set ELEVENLABS_API_KEY.")
    client = AsyncElevenLabs(
        api_key=settings.agent_api_key, base_url=settings.agent_api_url, timeout=TIMEOUT_SECONDS
    )
    try:
        agent = await client.conversational_ai.agents.get(agent_id=agent_id)
    except ElevenLabsError as exc:
        if exc.status_code == 404:
            return Finding(
                "agent",
                False,
                f"Agent {agent_id} does not exist in the ElevenLabs workspace of "
                "ELEVENLABS_API_KEY: check the campaign's agent_id, or the key.",
            )
        if exc.status_code in (401, 403):
            return Finding(
                "agent",
                False,
                f"ElevenLabs refused ELEVENLABS_API_KEY (HTTP {exc.status_code}): set it to a "
                "key of the workspace that owns the agent, with Conversational AI access.",
            )
        raise
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return Finding(
            "agent",
            False,
            f"ElevenLabs did not answer at {settings.agent_api_url} ({type(exc).__name__}).",
        )
    config = agent.conversation_config
    output = (config.tts.agent_output_audio_format if config.tts else None) or "pcm_16000"
    heard = (config.asr.user_input_audio_format if config.asr else None) or "pcm_16000"
    formats = {"output": output, "input": heard}
    # Where the agent's settings page has them, and their names in its API.
    settings_of = {
        "output": f"the TTS output format ({OUTPUT_SETTING})",
        "input": f"the user input audio format ({INPUT_SETTING})",
    }
    unusable = [side for side, name in formats.items() if name not in SUPPORTED]
    if unusable:
        return Finding(
            "agent",
            False,
            f"Agent {agent_id} uses audio callbridge cannot relay ("
            + ", ".join(f"{side} {formats[side]}" for side in unusable)
            + "): set "
            + " and ".join(settings_of[side] for side in unusable)
            + f" to {ULAW_8000} in the agent's settings.",
        )
    converted = [side for side, name in formats.items() if name != ULAW_8000]
    if converted:
        return Finding(
            "agent",
            True,
            f"Agent {agent_id} speaks {output} and listens in {heard}: callbridge converts it "
            f"on every call; set {' and '.join(settings_of[side] for side in converted)} to "
            f"{ULAW_8000} in the agent's settings to relay it untouched.",
            warning=True,
        )
    return Finding("agent", True, f"Agent {agent_id} speaks and listens in {ULAW_8000}.")


def _webhook_secret(settings: Settings) -> Finding:
    if settings.elevenlabs_webhook_secret:
        return Finding("webhook_secret", True, "The post-call webhook secret is set.")
    return Finding(
        "webhook_secret",
        False,
        "ELEVENLABS_WEBHOOK_SECRET is not set: post-call webhooks would be refused. Copy the "
        "HMAC secret of the workspace's post-call webhook into it.",
    )


async def _public_url(settings: Settings) -> Finding:
    if not settings.public_url:
        return Finding(
            "public_url",
            False,
            "CALLBRIDGE_PUBLIC_URL is not set: Twilio and ElevenLabs need a public https address "
            "of this service to send callbacks and open media streams.",
        )
    url = f"{settings.public_url.rstrip('/')}/healthz"
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            status = response.status
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return Finding(
            "public_url",
            False,
            f"{settings.public_url} cannot be reached ({type(exc).__name__}): Twilio could not "
            "deliver callbacks there. Point CALLBRIDGE_PUBLIC_URL at an address that reaches "
            "this service from the internet (a tunnel or a reverse proxy).",
        )
    if status != 200:
        return Finding(
            "public_url",
            False,
            f"{url} answered HTTP {status}, not callbridge's health check: point "
            "CALLBRIDGE_PUBLIC_URL at this service.",
        )
    # The real Twilio wants https; a carrier of one's own (CALLBRIDGE_TWILIO_API_URL) may not.
    real_twilio = not settings.sandbox and not settings.twilio_api_base_url
    if real_twilio and not settings.public_url.startswith("https://"):
        return Finding(
            "public_url",
            True,
            f"{settings.public_url} answers, but over plain http: use https in production.",
            warning=True,
        )
    return Finding("public_url", True, f"{settings.public_url} answers.")
