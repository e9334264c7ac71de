"""Short prefixed identifiers shown to users (``cmp_…``, ``ct_…``, ``att_…``)."""

import secrets


def new_id(prefix: str) -> str:
    # 80 random bits: collisions are negligible at any realistic volume, and the id stays short.
    return f"{prefix}_{secrets.token_hex(10)}"
