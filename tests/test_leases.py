"""Work meant for one node at a time: while one node holds a lock, the others skip the work."""

from __future__ import annotations

from campaigns.db import make_engine
from campaigns.leases import exclusive


async def test_only_one_node_at_a_time_holds_a_lock(database_url: str) -> None:
    node_a, node_b = make_engine(database_url), make_engine(database_url)
    try:
        sqlite = node_a.dialect.name == "sqlite"
        async with exclusive(node_a, "housekeeping") as a_holds:
            assert a_holds
            async with exclusive(node_b, "housekeeping") as b_holds:
                # SQLite serves a single process: there is no other node to exclude.
                assert b_holds is sqlite
            async with exclusive(node_b, "another job") as b_holds_other:
                assert b_holds_other
        async with exclusive(node_b, "housekeeping") as b_holds:
            assert b_holds  # released when the holder finished
    finally:
        await node_a.dispose()
        await node_b.dispose()
