"""Parsing a file off the event loop: in a thread, or in a pool of processes for a large file.

Decoding, CSV and phonenumbers are CPU work that must not hold up the event loop. A large import
runs the number checks in a process pool, a few batches ahead of the one being stored, so parsing
runs on every core while the database works; the batches come out in file order either way.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import BinaryIO

from campaigns.intake.reading import Columns, Record, open_records
from campaigns.intake.rows import ParsedBatch, assemble, cells, parse_batches
from campaigns.phones import DEFAULT_NUMBER_TYPES, Normalized, normalize_many

# Below this many bytes a file is parsed in a thread: starting processes would cost more than the
# parsing (about 40 ms per process against roughly 25 us per row, 60 bytes a row).
POOL_MIN_BYTES = 4 * 1024**2
# Batches read ahead of the one being stored, per parsing process: enough to keep every process
# busy while the database works, few enough that memory stays a few batches.
READ_AHEAD_PER_PROCESS = 2

NextBatch = Callable[[], Awaitable[ParsedBatch | None]]


def automatic_processes(source: BinaryIO) -> int:
    """One process per CPU for a file of POOL_MIN_BYTES or more whose size is known, else none."""
    size = _remaining_bytes(source)
    if size is None or size < POOL_MIN_BYTES:
        return 0
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _remaining_bytes(source: BinaryIO) -> int | None:
    try:
        if not source.seekable():
            return None
        here = source.tell()
        end = source.seek(0, io.SEEK_END)
        source.seek(here)
    except (AttributeError, OSError, ValueError):
        return None
    return end - here


@asynccontextmanager
async def parsed_batches(
    source: BinaryIO,
    default_region: str,
    phone_column: str,
    batch_size: int,
    processes: int,
    number_types: frozenset[str] = DEFAULT_NUMBER_TYPES,
) -> AsyncIterator[NextBatch]:
    """An awaitable "next parsed batch, or None at the end", in file order.

    Without processes, a thread parses batch after batch as they are asked for. With processes, a
    reader keeps a few batches ahead: it reads records in a thread and hands each batch's numbers
    to the pool.
    """
    if processes <= 0:
        batches = parse_batches(
            source,
            default_region=default_region,
            phone_column=phone_column,
            batch_size=batch_size,
            number_types=number_types,
        )
        yield lambda: asyncio.to_thread(next, batches, None)
        return
    loop = asyncio.get_running_loop()
    # Spawned, not forked: this process has threads (the driver's, asyncio's) whose locks a fork
    # could copy mid-use.
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
    ahead: asyncio.Queue[tuple[list[Record], Future[list[Normalized]]] | BaseException | None]
    ahead = asyncio.Queue(maxsize=processes * READ_AHEAD_PER_PROCESS)
    columns_known: asyncio.Future[Columns] = loop.create_future()

    async def read() -> None:
        try:
            columns, records = await asyncio.to_thread(
                open_records, source, phone_column, batch_size
            )
            columns_known.set_result(columns)
            while (batch := await asyncio.to_thread(next, records, None)) is not None:
                found = pool.submit(
                    normalize_many, cells(batch, columns), default_region, number_types=number_types
                )
                await ahead.put((batch, found))
            await ahead.put(None)
        except Exception as exc:  # handed over in file order, after the batches read before it
            await ahead.put(exc)

    async def next_batch() -> ParsedBatch | None:
        item = await ahead.get()
        if item is None:
            await ahead.put(None)  # asked again after the end: still the end
            return None
        if isinstance(item, BaseException):
            raise item
        batch, normalized = item
        found = await asyncio.wrap_future(normalized)
        return await asyncio.to_thread(assemble, batch, found, columns_known.result())

    reader = asyncio.create_task(read())
    try:
        yield next_batch
    finally:
        reader.cancel()
        with suppress(asyncio.CancelledError):
            await reader
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
