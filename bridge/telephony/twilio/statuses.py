"""Twilio's words in the domain's: call statuses, AnsweredBy values, machine-detection settings
and error codes."""

from __future__ import annotations

from campaigns.failures import ErrorClass
from campaigns.models import Answerer, AttemptStatus, MachineDetection

# Twilio's CallStatus values and the domain's attempt status each one is. The domain's stored
# status names happen to be spelled like Twilio's; they are the domain's own all the same, and this
# table is where a Twilio status becomes one of them.
CALL_STATUSES = {
    "queued": AttemptStatus.QUEUED,
    "initiated": AttemptStatus.INITIATED,
    "ringing": AttemptStatus.RINGING,
    "in-progress": AttemptStatus.IN_PROGRESS,
    "completed": AttemptStatus.COMPLETED,
    "busy": AttemptStatus.BUSY,
    "no-answer": AttemptStatus.NO_ANSWER,
    "failed": AttemptStatus.FAILED,
    "canceled": AttemptStatus.CANCELED,
}

# The domain's machine-detection settings as Twilio's MachineDetection parameter (OFF: not sent).
MACHINE_DETECTION = {
    MachineDetection.DETECT: "Enable",
    MachineDetection.UNTIL_GREETING_ENDS: "DetectMessageEnd",
}

# Twilio's AnsweredBy values and the domain's class of each (the value itself is kept and shown).
ANSWERERS = {
    "human": Answerer.HUMAN,
    "machine_start": Answerer.MACHINE,
    # With DetectMessageEnd: the greeting has ended (at a beep, a silence, or otherwise).
    "machine_end_beep": Answerer.MACHINE_GREETING_OVER,
    "machine_end_silence": Answerer.MACHINE_GREETING_OVER,
    "machine_end_other": Answerer.MACHINE_GREETING_OVER,
    "fax": Answerer.FAX,
    "unknown": Answerer.UNKNOWN,
}


def answerer(answered_by: str | None) -> str | None:
    """The domain's class of a Twilio AnsweredBy value (None when Twilio gave none)."""
    if not answered_by:
        return None
    return ANSWERERS.get(answered_by, Answerer.UNKNOWN)


# Twilio error codes and the domain's class of each; a code not here has no class.
ERROR_CLASSES = {
    "21211": ErrorClass.INVALID_NUMBER,
    "21214": ErrorClass.INVALID_NUMBER,
    "21216": ErrorClass.INVALID_NUMBER,
    "21217": ErrorClass.INVALID_NUMBER,
    "21202": ErrorClass.INVALID_NUMBER,
    "21215": ErrorClass.DESTINATION_REFUSED,
    "13227": ErrorClass.DESTINATION_NOT_ENABLED,
    "20003": ErrorClass.CREDENTIALS_REFUSED,
    "21210": ErrorClass.CALLER_ID_NOT_OWNED,
    "21212": ErrorClass.CALLER_ID_INVALID,
    "21219": ErrorClass.TRIAL_ACCOUNT,
}


def error_class(code: str | None) -> str | None:
    """The domain's class of a Twilio error code (None: a code the domain need not tell apart)."""
    return ERROR_CLASSES.get(code) if code else None


def attempt_status(call_status: str) -> str:
    """The domain's status for a Twilio CallStatus. A status Twilio may add later is passed on
    as it is: the domain ranks a status it does not know below every live one, so it moves
    nothing."""
    return CALL_STATUSES.get(call_status, call_status)
