"""Every table callbridge owns, on one metadata: what its migrations are compared with."""

from __future__ import annotations

# Each module registers its tables on Base when imported.
from campaigns import api_tables, installation, models  # noqa: F401
from campaigns.base import Base, UTCDateTime

metadata = Base.metadata

__all__ = ["Base", "UTCDateTime", "metadata"]
