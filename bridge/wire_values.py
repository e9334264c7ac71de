"""Values read off a provider's wire: form fields and JSON that may carry a number as text."""

from __future__ import annotations


def whole_number(value: object) -> int | None:
    """A whole number as a provider sends it (``"42"``, ``42``, ``"42.0"``, ``42.7`` taken as
    42); None when there is none (missing, empty, not a number, not finite)."""
    try:
        return int(str(value))
    except (TypeError, ValueError):
        pass
    try:
        return int(float(str(value)))
    except (TypeError, ValueError, OverflowError):
        return None
