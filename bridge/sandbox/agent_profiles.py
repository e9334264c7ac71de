"""What each sandbox agent is set to: its audio formats and the tone it speaks in.

Defaults are keyed by the agent id, so a test picks an agent by naming it: an id that contains a
format name (`agent_pcm_16000`, `agent_pcm_44100`, `agent_mp3_44100`) uses that format both ways,
any other id `ulaw_8000`, as an agent set up for Twilio would; `tone_<hz>` in the id (e.g.
`agent_pcm_24000_tone_1000`) sets the tone, else 440 Hz. An agent allows a conversation to
override its settings (`conversation_config_override`) unless its id contains `no_overrides`:
such an agent refuses a conversation that sends overrides, as ElevenLabs refuses overrides its
agent's security settings do not enable. An id containing `unknown` names no
agent (the agent API answers 404). The sandbox's agent API changes them per agent as ElevenLabs'
does (PATCH /v1/convai/agents/{agent_id}, conversation_config.tts and .asr).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

ULAW_8000 = "ulaw_8000"
DEFAULT_TONE_HZ = 440.0
# ElevenLabs' agent formats (the elevenlabs SDK's TtsOutputFormat and AsrInputFormat): what its
# agent API accepts in a PATCH. Others can only come from an agent id, to rehearse an agent
# whose audio callbridge cannot convert.
AGENT_FORMATS = (
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_44100",
    "pcm_48000",
    ULAW_8000,
)
_FORMAT_IN_ID = re.compile(r"(?:pcm|ulaw|alaw|mp3|opus)_\d+")
_TONE_IN_ID = re.compile(r"tone_(\d+)")


@dataclass(frozen=True)
class AgentProfile:
    output_format: str = ULAW_8000  # conversation_config.tts.agent_output_audio_format
    input_format: str = ULAW_8000  # conversation_config.asr.user_input_audio_format
    tone_hz: float = DEFAULT_TONE_HZ
    # platform_settings.overrides: whether a conversation may override the agent's settings.
    overrides_allowed: bool = True

    def platform_settings(self) -> dict[str, Any]:
        allowed = self.overrides_allowed
        return {
            "overrides": {
                "conversation_config_override": {
                    "agent": {
                        "first_message": allowed,
                        "language": allowed,
                        "prompt": {"prompt": allowed},
                    },
                    "tts": {"voice_id": allowed},
                }
            }
        }

    def refused_override(self, override: Any) -> str | None:
        """Why a conversation's overrides are refused (ElevenLabs' words), or None."""
        if not override or self.overrides_allowed:
            return None
        fields = sorted(_leaf_names(override)) or ["conversation_config_override"]
        return f"Override for field '{fields[0]}' is not allowed by config."

    def conversation_config(self) -> dict[str, Any]:
        return {
            "asr": {"user_input_audio_format": self.input_format},
            "tts": {"agent_output_audio_format": self.output_format},
        }

    def patched(self, conversation_config: dict[str, Any]) -> AgentProfile:
        """This profile with a PATCH's conversation_config applied. Raises ValueError."""
        tts = conversation_config.get("tts") or {}
        asr = conversation_config.get("asr") or {}
        if not isinstance(tts, dict) or not isinstance(asr, dict):
            raise ValueError("conversation_config.tts and .asr are objects")
        changed = self
        for key, value, field in (
            ("tts.agent_output_audio_format", tts.get("agent_output_audio_format"), "output"),
            ("asr.user_input_audio_format", asr.get("user_input_audio_format"), "input"),
        ):
            if value is None:
                continue
            if value not in AGENT_FORMATS:
                raise ValueError(f"{key} must be one of {', '.join(AGENT_FORMATS)}")
            changed = replace(changed, **{f"{field}_format": value})
        return changed


def _leaf_names(override: Any) -> list[str]:
    if not isinstance(override, dict):
        return []
    names: list[str] = []
    for key, value in override.items():
        names += _leaf_names(value) if isinstance(value, dict) and value else [str(key)]
    return names


def exists(agent_id: str) -> bool:
    """Every agent id names an agent of the sandbox's workspace but those containing `unknown`
    (`agent_unknown_x`): they rehearse an id that is wrong, or of another workspace."""
    return "unknown" not in agent_id


def profile_for(agent_id: str) -> AgentProfile:
    """The settings an agent starts with, read from its id."""
    found = _FORMAT_IN_ID.search(agent_id)
    audio_format = found.group(0) if found else ULAW_8000
    tone = _TONE_IN_ID.search(agent_id)
    return AgentProfile(
        output_format=audio_format,
        input_format=audio_format,
        tone_hz=float(tone.group(1)) if tone else DEFAULT_TONE_HZ,
        overrides_allowed="no_overrides" not in agent_id,
    )
