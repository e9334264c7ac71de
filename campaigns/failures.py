"""Why a call failed, in the domain's words: the provider's adapter classifies its own error codes
into these classes, and the retry policy and the circuit breaker decide on the class.

The provider's own code is kept beside the class (Attempt.error_code), as it is shown to users.
"""

from __future__ import annotations


class ErrorClass:
    # The number itself cannot be called (not a valid number, unreachable, blocked): no retry.
    INVALID_NUMBER = "invalid_number"
    # The account may not call this destination, as the provider said when refusing the call:
    # no retry for this number.
    DESTINATION_REFUSED = "destination_refused"
    # The account's destination settings stopped the call while it was being connected.
    DESTINATION_NOT_ENABLED = "destination_not_enabled"
    # The provider refused the service's credentials.
    CREDENTIALS_REFUSED = "credentials_refused"
    # The caller id is not one the account owns or has verified.
    CALLER_ID_NOT_OWNED = "caller_id_not_owned"
    # The caller id is not a valid phone number.
    CALLER_ID_INVALID = "caller_id_invalid"
    # A trial account, which may only call numbers it has verified.
    TRIAL_ACCOUNT = "trial_account"

    # No retry can fix these: the number is unusable.
    PERMANENT = frozenset({INVALID_NUMBER, DESTINATION_REFUSED})
