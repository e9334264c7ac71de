"""What makes an intake refuse a whole file or request, rather than some of its rows."""

from __future__ import annotations


class ImportRefused(ValueError):
    """The whole file is refused (nothing is imported); the message is meant for the user."""


class CampaignNotFound(LookupError):
    pass
