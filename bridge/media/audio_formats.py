"""Agent audio formats: Twilio's μ-law 8000 converted to and from what the agent announced.

An ElevenLabs agent names its formats in `conversation_initiation_metadata`
(`agent_output_audio_format`, `user_input_audio_format`). `ulaw_8000` is what a Twilio Media
Stream carries, so it passes untouched, at no cost. PCM (16-bit little-endian mono) at any of
ElevenLabs' rates is converted: μ-law by the stdlib's G.711 codec (audioop), the rate by libsoxr
(python-soxr), as a stream. Each direction of a call has its own converter, which keeps the
resampler's history and, towards Twilio, the part of a 20 ms frame not yet complete, so audio
flows on across frame borders without a gap or a click. On an interruption, what the converter
towards Twilio still holds belongs to the cut turn and is dropped; when the agent ends, what it
holds is sent. Anything else cannot be converted: the call must end, and the operator be told
which agent setting to change.
"""

from __future__ import annotations

import sys
import warnings
from binascii import a2b_base64, b2a_base64
from dataclasses import dataclass

import numpy as np
import soxr

with warnings.catch_warnings():
    # Deprecated in 3.11, removed in 3.13, where the audioop-lts distribution provides it.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ULAW_8000 = "ulaw_8000"
TWILIO_RATE = 8000
SAMPLE_BYTES = 2
TWILIO_FRAME_BYTES = 160  # 20 ms of μ-law 8000, as Twilio sends and expects it
ULAW_SILENCE = b"\xff"  # μ-law's zero
# ElevenLabs' PCM formats (the elevenlabs SDK's TtsOutputFormat and AsrInputFormat).
PCM_RATES: dict[str, int] = {
    "pcm_8000": 8000,
    "pcm_16000": 16000,
    "pcm_22050": 22050,
    "pcm_24000": 24000,
    "pcm_44100": 44100,
    "pcm_48000": 48000,
}
SUPPORTED = (ULAW_8000, *PCM_RATES)
# The agent settings that hold each format, as ElevenLabs names them.
OUTPUT_SETTING = "conversation_config.tts.agent_output_audio_format"
INPUT_SETTING = "conversation_config.asr.user_input_audio_format"
_WIRE = np.dtype("<i2")  # ElevenLabs' PCM on the wire
_NATIVE = np.dtype(np.int16)  # what audioop and soxr work with
_SWAP = sys.byteorder != "little"


class UnsupportedAudioFormat(ValueError):
    """The agent announced a format callbridge cannot convert to or from μ-law 8000."""

    def __init__(self, setting: str, value: str | None) -> None:
        self.setting = setting
        self.value = value
        super().__init__(f"{setting} is {value!r}, which callbridge cannot convert")


def pcm_rate(audio_format: str) -> int | None:
    return PCM_RATES.get(audio_format)


def _resampler(in_rate: int, out_rate: int) -> soxr.ResampleStream | None:
    if in_rate == out_rate:
        return None
    # libsoxr's variable-rate engine: its output follows its input frame by frame (a fixed
    # delay of a few ms), where the fixed-rate engines hold 100 ms or more back and release it
    # in bursts, which a live call cannot wait for. Same stop-band (-80 dB) as quality HQ.
    return soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ", vr=True)


def _samples(raw: bytes, dtype: np.dtype) -> np.ndarray:
    # A view of the bytes, not a copy, shaped as soxr keeps samples, (frames, channels):
    # given a 1-D array, resample_chunk reshapes its input and output on every call, which
    # costs more than this reshape (about 1 µs a chunk).
    return np.frombuffer(raw, dtype=dtype).reshape(-1, 1)


def _pcm_from_wire(raw: bytes) -> np.ndarray:
    # On a little-endian host (any we run on) the wire's samples are read in place.
    samples = _samples(raw, _WIRE)
    return samples.astype(_NATIVE) if _SWAP else samples


def _encode(audio: bytes | np.ndarray) -> str:
    # What base64.b64encode(...).decode() gives, without its wrapper: 100 times a second a call.
    return b2a_base64(audio, newline=False).decode("ascii")


class ToAgent:
    """Twilio's μ-law 8000 frames, as the agent's PCM at its input rate."""

    def __init__(self, rate: int) -> None:
        self._resample = _resampler(TWILIO_RATE, rate)

    def convert(self, payload: str) -> str | None:
        """One `media` payload as a `user_audio_chunk`; None while the resampler fills up."""
        # a2b_base64 takes the str itself (b64decode would first copy it into bytes), and
        # ulaw2lin gives the native int16 samples that soxr reads in place through frombuffer.
        linear = audioop.ulaw2lin(a2b_base64(payload), SAMPLE_BYTES)
        if self._resample is None:
            return _encode(audioop.byteswap(linear, SAMPLE_BYTES) if _SWAP else linear)
        out = self._resample.resample_chunk(_samples(linear, _NATIVE))
        if not len(out):
            return None
        # b2a_base64 reads the array's buffer: no copy into bytes first.
        return _encode(out.astype(_WIRE) if _SWAP else out)


class ToCaller:
    """The agent's PCM at its output rate, as Twilio's 160-byte μ-law 8000 frames."""

    def __init__(self, rate: int) -> None:
        self._resample = _resampler(rate, TWILIO_RATE)
        self._odd = b""  # a chunk that ended inside a sample
        self._pending = bytearray()  # μ-law of a frame not yet complete

    def convert(self, payload: str) -> list[str]:
        """One agent `audio` chunk as the whole frames it completes (none, one or more)."""
        raw = a2b_base64(payload)
        if self._odd:
            raw = self._odd + raw
            self._odd = b""
        if len(raw) % SAMPLE_BYTES:
            raw, self._odd = raw[:-1], raw[-1:]
        samples = _pcm_from_wire(raw)
        if self._resample is not None:
            samples = self._resample.resample_chunk(samples)
        # lin2ulaw reads the resampler's int16 array in place.
        ulaw = audioop.lin2ulaw(samples, SAMPLE_BYTES)
        pending = self._pending
        if not pending and len(ulaw) == TWILIO_FRAME_BYTES:
            # The usual case, an agent sending 20 ms at a time once the resampler runs: one
            # whole frame, nothing held back, no copy through the buffer.
            return [_encode(ulaw)]
        pending += ulaw
        complete = len(pending) - len(pending) % TWILIO_FRAME_BYTES
        frames = [
            _encode(pending[i : i + TWILIO_FRAME_BYTES])
            for i in range(0, complete, TWILIO_FRAME_BYTES)
        ]
        del pending[:complete]
        return frames

    def reset(self) -> None:
        """The agent was cut off: what is still held of its audio is the cut audio, and must
        not be played before the next. That is the resampler's delay (15 ms at 16 kHz, 22 ms at
        44.1 kHz) and a frame not yet complete (up to 20 ms): both dropped, and the resampler's
        history cleared, so the next audio starts afresh (as on a new call) instead of after
        the end of what was cut."""
        if self._resample is not None:
            self._resample.clear()
        self._pending.clear()
        self._odd = b""

    def flush(self) -> list[str]:
        """The agent's audio has ended (its conversation closed): what is still held, as whole
        frames, the last one completed with silence. Without it the agent's last 20 to 40 ms
        are never sent; after a reset (a new turn, which started with an empty resampler) that
        would be up to two frames of a short last reply."""
        if self._resample is not None:
            tail = self._resample.resample_chunk(np.empty((0, 1), _NATIVE), last=True)
            self._pending += audioop.lin2ulaw(tail, SAMPLE_BYTES)
            # Ended: a stream that was told `last` takes no more input until cleared.
            self._resample.clear()
        self._odd = b""
        if not self._pending:
            return []
        short = -len(self._pending) % TWILIO_FRAME_BYTES
        self._pending += ULAW_SILENCE * short
        frames = [
            _encode(self._pending[i : i + TWILIO_FRAME_BYTES])
            for i in range(0, len(self._pending), TWILIO_FRAME_BYTES)
        ]
        self._pending.clear()
        return frames


@dataclass(frozen=True)
class AgentFormats:
    output: str  # what the agent sends
    input: str  # what the agent expects to hear


class AudioPath:
    """One call's audio between Twilio and the agent: the relay calls it once per message each
    way. With μ-law 8000 both ways it hands every payload on as it is."""

    def __init__(self, formats: AgentFormats) -> None:
        self.formats = formats
        out_rate = pcm_rate(formats.output)
        in_rate = pcm_rate(formats.input)
        if out_rate is None and formats.output != ULAW_8000:
            raise UnsupportedAudioFormat(OUTPUT_SETTING, formats.output)
        if in_rate is None and formats.input != ULAW_8000:
            raise UnsupportedAudioFormat(INPUT_SETTING, formats.input)
        self._to_caller = ToCaller(out_rate) if out_rate is not None else None
        self._to_agent = ToAgent(in_rate) if in_rate is not None else None

    @property
    def converts(self) -> bool:
        return self._to_caller is not None or self._to_agent is not None

    @property
    def converts_to_agent(self) -> bool:
        """What `to_agent` returns is base64 made here (else Twilio's payload as it came)."""
        return self._to_agent is not None

    @property
    def converts_to_caller(self) -> bool:
        """What `to_caller` returns is base64 made here (else the agent's payload as it came)."""
        return self._to_caller is not None

    def interrupted(self) -> None:
        """The agent was cut off: none of its audio still held in conversion is to be played.
        (Passed-through audio holds nothing back.)"""
        if self._to_caller is not None:
            self._to_caller.reset()

    def caller_tail(self) -> list[str]:
        """The agent's audio has ended: the Twilio `media` payloads conversion still held."""
        return [] if self._to_caller is None else self._to_caller.flush()

    def to_agent(self, payload: str) -> str | None:
        """A Twilio `media` payload in the agent's input format (None: nothing to send yet)."""
        return payload if self._to_agent is None else self._to_agent.convert(payload)

    def to_caller(self, payload: str) -> list[str]:
        """An agent `audio` payload as the Twilio `media` payloads it makes."""
        return [payload] if self._to_caller is None else self._to_caller.convert(payload)


PASSTHROUGH = AgentFormats(ULAW_8000, ULAW_8000)


def audio_path(output_format: str | None, input_format: str | None) -> AudioPath:
    """The audio path for what the agent announced. A format left out is taken as μ-law 8000
    (what callbridge always assumed). Raises UnsupportedAudioFormat."""
    return AudioPath(AgentFormats(output_format or ULAW_8000, input_format or ULAW_8000))


ATTENTION_KIND = "agent_audio_format"
_SETTING_NAMES = {OUTPUT_SETTING: "TTS output format", INPUT_SETTING: "ASR input format"}


def attention_text(agent_id: str, problem: UnsupportedAudioFormat) -> tuple[str, str]:
    """What an operator reads about an agent whose audio cannot be converted: (message, remedy)."""
    name = _SETTING_NAMES.get(problem.setting, problem.setting)
    direction = "sends" if problem.setting == OUTPUT_SETTING else "expects to hear"
    message = (
        f"Agent {agent_id} {direction} audio as {problem.value!r} ({name}), which callbridge "
        "cannot convert to or from a phone call's μ-law 8000: its calls are ended at once."
    )
    remedy = (
        f"In the ElevenLabs agent settings of {agent_id}, set the {name} ({problem.setting}) "
        f"to ulaw_8000 (passed through as it is) or one of {', '.join(PCM_RATES)} (converted), "
        "then resume the campaign."
    )
    return message, remedy
