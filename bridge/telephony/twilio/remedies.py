"""How to fix, on a Twilio account, each failure the circuit breaker pauses a campaign for."""

from __future__ import annotations

from campaigns.failures import ErrorClass

_GEO_FIX = (
    "Enable the destination countries in the Twilio console (Voice > Settings > Geo "
    "permissions), then resume the campaign."
)
REMEDIES = {
    ErrorClass.CREDENTIALS_REFUSED: (
        "Check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (a rotated or revoked auth token is the "
        "usual cause), restart the service with the right ones, then resume the campaign."
    ),
    ErrorClass.CALLER_ID_NOT_OWNED: (
        "Buy {from_number} or add it as a Verified Caller ID in the Twilio console, or set the "
        "campaign's from_number to a number the account owns, then resume the campaign."
    ),
    ErrorClass.CALLER_ID_INVALID: (
        "Set the campaign's from_number to a number the account owns, in E.164 form, then "
        "resume the campaign."
    ),
    ErrorClass.DESTINATION_REFUSED: _GEO_FIX,
    ErrorClass.DESTINATION_NOT_ENABLED: _GEO_FIX,
    ErrorClass.TRIAL_ACCOUNT: (
        "Upgrade the Twilio account (or verify the numbers to call), then resume the campaign."
    ),
}
