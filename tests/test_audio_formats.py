"""Issue 13, point 1: the relay converts an agent's audio format to and from Twilio's μ-law 8000.

The service runs for real with its sandbox agent (agent ids pick the formats: `agent_pcm_16000`,
…); the test plays Twilio's side of the Media Stream. The agent speaks a known tone in its output
format and the callee a known tone in μ-law 8000; what reaches each side is measured with numpy:
dominant frequency within 2 % of the tone, level within 3 dB, and no step at a frame border
larger than the largest step inside the frames (a gap or a restarted resampler makes one).
"""

from __future__ import annotations

import asyncio
import base64
import json
import warnings
from typing import Any

import aiohttp
import numpy as np
import pytest
from elevenlabs.client import AsyncElevenLabs

from bridge.app import create_app
from bridge.app_keys import SANDBOX_AGENT, SESSIONMAKER
from bridge.media.audio_formats import audio_path
from bridge.sandbox import agent_audio, agent_brain
from bridge.sandbox.agent import SandboxAgent
from bridge.sandbox.agent_brain import ConversationRecord
from bridge.settings import SANDBOX_ELEVENLABS_API_KEY, Settings
from campaigns.models import Attempt, AttemptStatus, Campaign, CampaignStatus
from tests.agent_fixtures import TwilioStreamSide, answered_attempt, fetch_twiml, open_stream
from tests.conftest import eventually, housekeeping_finished
from tests.service import API_KEY, free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

AGENT_TONE_HZ = 440.0  # the sandbox agent's default voice
AGENT_AMPLITUDE = agent_audio.TONE_AMPLITUDE
CALLEE_TONE_HZ = 1000.0
CALLEE_AMPLITUDE = 8000
CALLEE_TONE_FRAMES = 50  # 1 s of tone, then silence: the agent answers and hangs up
CALLEE_SILENT_FRAMES = 20
DEADLINE_SECONDS = 15.0
RATES = {"ulaw_8000": 8000, "pcm_16000": 16000, "pcm_24000": 24000, "pcm_44100": 44100}


@pytest.fixture
async def client(aiohttp_server: Any, aiohttp_client: Any, database_url: str) -> Any:
    port = free_port()
    settings = Settings(database_url=database_url, port=port, api_keys=(API_KEY,))
    test_client = await aiohttp_client(await aiohttp_server(create_app(settings), port=port))
    test_client.app[SANDBOX_AGENT].capture_seconds = 2.0
    yield test_client
    await housekeeping_finished()


def callee_tone() -> list[bytes]:
    """The callee's tone as Twilio sends it: 20 ms μ-law 8000 frames, phase running on."""
    t = np.arange(CALLEE_TONE_FRAMES * 160) / 8000
    linear = np.rint(CALLEE_AMPLITUDE * np.sin(2 * np.pi * CALLEE_TONE_HZ * t)).astype("<i2")
    ulaw = audioop.lin2ulaw(linear.tobytes(), 2)
    return [ulaw[i : i + 160] for i in range(0, len(ulaw), 160)]


def dominant_hz(signal: np.ndarray, rate: int) -> float:
    # Zero-padded to a fine grid: a pure tone's peak lands within rate / 2**20 of its frequency.
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal)), 1 << 20))
    return float(np.argmax(spectrum)) * rate / (1 << 20)


def level_db(signal: np.ndarray, amplitude: float) -> float:
    """RMS against that of a sine of ``amplitude``."""
    return float(20 * np.log10(np.sqrt(np.mean(signal**2)) / (amplitude / np.sqrt(2))))


def border_steps(chunks: list[np.ndarray]) -> tuple[float, float]:
    """(largest step across a chunk border, largest step inside a chunk)."""
    signal = np.concatenate(chunks)
    steps = np.abs(np.diff(signal))
    borders = np.cumsum([len(c) for c in chunks])[:-1] - 1
    inside = np.delete(steps, borders)
    return float(steps[borders].max()), float(inside.max())


def decode(raw: bytes, audio_format: str) -> np.ndarray:
    if audio_format == "ulaw_8000":
        raw = audioop.ulaw2lin(raw, 2)
    return np.frombuffer(raw, "<i2").astype(float)


def conversation_of(sandbox: SandboxAgent, agent_id: str) -> ConversationRecord | None:
    found = [r for r in sandbox.conversations.values() if r.agent_id == agent_id]
    return found[0] if found else None


async def call(client: Any, agent_id: str) -> tuple[list[dict[str, Any]], ConversationRecord]:
    """One answered call to ``agent_id``: the callee says its tone, then is silent until the
    agent has answered and hung up. Returns what Twilio's side received, and the agent's record."""
    sandbox: SandboxAgent = client.app[SANDBOX_AGENT]
    attempt = await answered_attempt(client.app, agent_id=agent_id)
    url, parameters = await fetch_twiml(client, attempt)
    # The greeting is queued before the stream opens, as on a real call.
    record = await eventually(
        lambda: conversation_of(sandbox, agent_id),
        within=DEADLINE_SECONDS,
        what="the agent's conversation",
    )
    await eventually(
        lambda: record.agent_frames >= agent_audio.GREETING_FRAMES,
        within=DEADLINE_SECONDS,
        what="the greeting",
    )
    received: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        ws = await open_stream(session, url)
        twilio = TwilioStreamSide(ws, str(attempt.provider_call_id))
        await twilio.begin(parameters)
        frames = callee_tone() + [agent_audio.SILENCE] * CALLEE_SILENT_FRAMES
        for index, frame in enumerate(frames):
            await twilio.media(index, base64.b64encode(frame).decode())

        async def read_until_closed() -> None:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    received.append(json.loads(message.data))

        # The agent ends the call after its reply: the relay closes Twilio's side.
        await asyncio.wait_for(read_until_closed(), DEADLINE_SECONDS)
    await eventually(
        lambda: record.status == "done", within=DEADLINE_SECONDS, what="the agent to finish"
    )
    return received, record


@pytest.mark.parametrize("audio_format", list(RATES))
async def test_tones_cross_the_relay_both_ways_in_the_agents_format(
    client: Any, audio_format: str
) -> None:
    agent_id = f"agent_{audio_format}"
    received, record = await call(client, agent_id)
    rate = RATES[audio_format]

    # Agent -> callee: whole 20 ms μ-law 8000 frames carrying the agent's tone. The callee
    # cuts in during the greeting: before the `clear` the greeting, after it the reply.
    assert record.ended_by == "agent" and record.interruptions == 1
    events = [m["event"] for m in received if m["event"] in ("media", "clear")]
    assert events.count("clear") == 1
    media = [base64.b64decode(m["media"]["payload"]) for m in received if m["event"] == "media"]
    assert media and {len(f) for f in media} == {160}
    greeting, reply = media[: events.index("clear")], media[events.index("clear") :]
    # What conversion held of the greeting when it was cut (the resampler's delay, under
    # 30 ms, and a frame not yet complete) is cut with it: at most two frames. The reply is
    # whole: its tail is sent as the agent hangs up (the last frame completed with silence).
    converted = audio_format != "ulaw_8000"
    assert agent_audio.GREETING_FRAMES - (2 if converted else 0) <= len(greeting)
    assert len(greeting) <= agent_audio.GREETING_FRAMES
    assert agent_brain.REPLY_FRAMES <= len(reply) <= agent_brain.REPLY_FRAMES + converted
    heard_by_callee = [decode(f, "ulaw_8000") for f in media]
    signal = np.concatenate(heard_by_callee)
    assert dominant_hz(signal, 8000) == pytest.approx(AGENT_TONE_HZ, rel=0.02)
    assert abs(level_db(signal, AGENT_AMPLITUDE)) <= 3.0
    # The tone runs on without a step inside each turn; where the greeting was cut the callee
    # hears no border (Twilio drops what it had not played on the clear).
    for turn in (greeting, reply):
        border, inside = border_steps([decode(f, "ulaw_8000") for f in turn])
        assert border <= inside, f"a step of {border} at a frame border, {inside} at most inside"

    # Callee -> agent: the callee's tone, in the agent's input format.
    chunks = client.app[SANDBOX_AGENT].heard[record.conversation_id]
    heard_by_agent = [decode(c, audio_format) for c in chunks]
    tone_samples = (CALLEE_TONE_FRAMES - 2) * rate // 50  # the tone, before the silence
    signal = np.concatenate(heard_by_agent)[:tone_samples]
    assert len(signal) == tone_samples
    assert dominant_hz(signal, rate) == pytest.approx(CALLEE_TONE_HZ, rel=0.02)
    assert abs(level_db(signal, CALLEE_AMPLITUDE)) <= 3.0
    in_tone = []
    total = 0
    for chunk in heard_by_agent:
        if total + len(chunk) > tone_samples:
            break
        in_tone.append(chunk)
        total += len(chunk)
    border, inside = border_steps(in_tone)
    assert border <= inside, f"a step of {border} at a chunk border, {inside} at most inside"


async def test_formats_set_through_the_agent_api_are_announced_and_converted(
    client: Any,
) -> None:
    """ElevenLabs' own SDK sets an agent's formats on the sandbox (PATCH), reads them back (GET),
    and the next call converts each direction by its own format."""
    agent_id = "agent_configured"
    elevenlabs = AsyncElevenLabs(
        api_key=SANDBOX_ELEVENLABS_API_KEY,
        base_url=f"http://127.0.0.1:{client.server.port}/sandbox/elevenlabs",
    )
    before = await elevenlabs.conversational_ai.agents.get(agent_id)
    assert before.conversation_config.tts is not None and before.conversation_config.asr
    assert before.conversation_config.tts.agent_output_audio_format == "ulaw_8000"
    await elevenlabs.conversational_ai.agents.update(
        agent_id,
        conversation_config={
            "tts": {"agent_output_audio_format": "pcm_24000"},
            "asr": {"user_input_audio_format": "pcm_16000"},
        },
    )
    after = await elevenlabs.conversational_ai.agents.get(agent_id)
    assert after.conversation_config.tts is not None and after.conversation_config.asr
    assert after.conversation_config.tts.agent_output_audio_format == "pcm_24000"
    assert after.conversation_config.asr.user_input_audio_format == "pcm_16000"
    refused = await client.patch(
        f"/sandbox/elevenlabs/v1/convai/agents/{agent_id}",
        json={"conversation_config": {"tts": {"agent_output_audio_format": "mp3_44100"}}},
        headers={"xi-api-key": SANDBOX_ELEVENLABS_API_KEY},
    )
    assert refused.status == 422

    received, record = await call(client, agent_id)
    media = [base64.b64decode(m["media"]["payload"]) for m in received if m["event"] == "media"]
    signal = np.concatenate([decode(f, "ulaw_8000") for f in media])
    assert dominant_hz(signal, 8000) == pytest.approx(AGENT_TONE_HZ, rel=0.02)
    chunks = client.app[SANDBOX_AGENT].heard[record.conversation_id]
    signal = np.concatenate([decode(c, "pcm_16000") for c in chunks])[: 16000 // 2]
    assert dominant_hz(signal, 16000) == pytest.approx(CALLEE_TONE_HZ, rel=0.02)


@pytest.mark.parametrize("audio_format", ["pcm_16000", "pcm_44100"])
async def test_the_agent_still_tells_a_voicemail_beep_after_conversion(
    client: Any, audio_format: str
) -> None:
    agent_id = f"agent_vm_{audio_format}"
    sandbox: SandboxAgent = client.app[SANDBOX_AGENT]
    attempt = await answered_attempt(client.app, agent_id=agent_id)
    url, parameters = await fetch_twiml(client, attempt)
    async with aiohttp.ClientSession() as session:
        ws = await open_stream(session, url)
        twilio = TwilioStreamSide(ws, str(attempt.provider_call_id))
        await twilio.begin(parameters)
        for index in range(agent_audio.VOICEMAIL_GREETING_FRAMES + 20):
            frame = agent_audio.callee_frame("voicemail", index)
            await twilio.media(index, base64.b64encode(frame).decode())
        async for _ in ws:  # until the agent, done with its message, hangs up
            pass
    record = await eventually(
        lambda: conversation_of(sandbox, agent_id), within=DEADLINE_SECONDS, what="the conversation"
    )
    await eventually(
        lambda: record.status == "done", within=DEADLINE_SECONDS, what="the agent to finish"
    )
    assert record.voicemail and record.ended_by == "agent"


async def test_an_unconvertible_format_ends_the_call_and_names_the_setting(client: Any) -> None:
    agent_id = "agent_mp3_44100"
    sandbox: SandboxAgent = client.app[SANDBOX_AGENT]
    attempt = await answered_attempt(client.app, agent_id=agent_id)
    url, parameters = await fetch_twiml(client, attempt)
    async with aiohttp.ClientSession() as session:
        ws = await open_stream(session, url)
        twilio = TwilioStreamSide(ws, str(attempt.provider_call_id))
        await twilio.begin(parameters)
        await twilio.media(0, base64.b64encode(agent_audio.SILENCE).decode())
        message = await asyncio.wait_for(ws.receive(), DEADLINE_SECONDS)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    # The agent's side was closed too: its conversation ended with the caller gone.
    record = await eventually(
        lambda: conversation_of(sandbox, agent_id), within=DEADLINE_SECONDS, what="the conversation"
    )
    await eventually(
        lambda: record.status == "done", within=DEADLINE_SECONDS, what="the agent's socket to close"
    )
    assert record.ended_by == "callee"

    async def paused() -> tuple[Attempt, Campaign] | None:
        async with client.app[SESSIONMAKER]() as session:
            ended = await session.get(Attempt, attempt.id)
            assert ended is not None
            campaign = await session.get(Campaign, ended.campaign_id)
        assert campaign is not None
        if campaign.status != CampaignStatus.PAUSED:
            return None
        return ended, campaign

    ended, campaign = await eventually(
        paused, within=DEADLINE_SECONDS, what="the campaign to be paused"
    )
    assert ended.status == AttemptStatus.FAILED
    assert agent_id in str(ended.error_message) and "mp3_44100" in str(ended.error_message)

    answer = await client.get("/api/v1/attention", headers={"Authorization": f"Bearer {API_KEY}"})
    assert answer.status == 200
    items = (await answer.json())["items"]
    assert len(items) == 1 and items[0]["open"]
    item = items[0]
    assert item["kind"] == "agent_audio_format" and item["campaign_id"] == campaign.id
    assert agent_id in item["message"] and "mp3_44100" in item["message"]
    assert agent_id in item["remedy"] and "TTS output format" in item["remedy"]
    assert "conversation_config.tts.agent_output_audio_format" in item["remedy"]
    assert "ulaw_8000" in item["remedy"] and "pcm_16000" in item["remedy"]
    assert item["details"]["agent_id"] == agent_id


def test_chunks_of_any_size_make_whole_frames_of_the_same_audio() -> None:
    """An agent's chunks need not hold whole samples or 20 ms: odd-sized ones come out as the
    same 160-byte frames of the same tone (the resampler rounds a little differently, within one
    μ-law step)."""
    rate = 24000
    t = np.arange(rate) / rate
    pcm = np.rint(8000 * np.sin(2 * np.pi * AGENT_TONE_HZ * t)).astype("<i2").tobytes()

    def frames(size: int) -> list[bytes]:
        path = audio_path("pcm_24000", "pcm_24000")
        out: list[str] = []
        for start in range(0, len(pcm), size):
            out += path.to_caller(base64.b64encode(pcm[start : start + size]).decode())
        return [base64.b64decode(f) for f in out]

    whole, odd = frames(960), frames(333)
    assert {len(f) for f in whole + odd} == {160}
    assert abs(len(whole) - len(odd)) <= 1
    count = min(len(whole), len(odd))
    a = decode(b"".join(whole[:count]), "ulaw_8000")
    b = decode(b"".join(odd[:count]), "ulaw_8000")
    assert np.max(np.abs(a - b)) <= 256  # one μ-law step at this level
