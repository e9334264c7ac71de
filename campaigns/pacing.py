"""Pacing: the wall-clock grid of dial slots that keeps a campaign to its calls per second."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

# Pacing. A carrier counts calls per wall-clock second, and the "cps" a campaign promises is
# checked the same way. Slots therefore sit on a grid fixed to the wall clock: at c calls per
# second, slot k belongs to the second holding (k + 1/2) / c seconds after the Unix epoch, so
# every whole second holds exactly c slots and no rate below c is given away.
#
# Inside its second the grid is pressed towards the start, leaving the last 40 % free
# (FREE_TAIL): at c = 10 the slots are at .03, .09, ... .57. A dial that leaves late, or reaches
# a busy provider late, still lands in its own second, and a late dial can only ever be late,
# never early, so the free time is all at the end. The tail is that wide because the provider
# stamps a create when it arrives: the last dial of a second leaves by .65 at the latest (its
# slot, under .6, plus MAX_LATE), which leaves it 350 ms to get there (a quarter left 200 ms,
# and a loaded machine running several nodes, the database and the carrier used all of it).
# (A test over any sliding window [t, t + 1 s) is another matter: dial i and dial i + c are
# 1 s apart, so any jitter puts c + 1 dials in some such window, which only pacing slower than
# c avoids.)
#
# The guards that make the rate hold whatever the load: a dial leaves only within the wall-clock
# second its slot is in, less the send margin, so the per-second count holds; and at most MAX_LATE
# after its slot, so that dials held up together (a stalled event loop, a slow database) do not
# leave together with the next ones on time: over any sliding second at most about
# c + 1 + MAX_LATE * c / (1 - FREE_TAIL) dials leave (22 at c = 20). A dial woken later than that
# takes a fresh slot instead. MAX_LATE is kept short because whatever lateness the sender allows
# adds to the jitter of the path to the provider, which the provider's own count also sees.
# Slots are handed out under the campaign row's lock (next_dial_at), so this holds across nodes.
#
# Slot indexes are computed from the epoch, never by adding gaps (which would drift). The
# tolerance maps an instant read back from the database (rounded to the microsecond) to its own
# slot rather than the next one.
FREE_TAIL = 0.4
_SLOT_TOLERANCE = 1e-3
# Time kept, before the end of a slot's second, for a create to reach the provider and be
# stamped by its clock (building the request, the network, a busy event loop at either end).
# With the free tail above, MAX_LATE ends a slot's wait first (by .65); this bound keeps a dial in
# its own second whatever FREE_TAIL and MAX_LATE are set to.
SEND_MARGIN = timedelta(milliseconds=100)
MAX_LATE = timedelta(milliseconds=50)


def slot_index(instant: datetime, cps: float) -> int:
    """The first slot at or after ``instant``."""
    stamp = instant.timestamp()
    second = math.floor(stamp)
    into = (stamp - second) / (1 - FREE_TAIL)
    # Past the last slot of its second (into the free tail): the next second's first slot.
    nominal = second + 1 if into >= 1 else second + into
    return math.ceil(nominal * cps - 0.5 - _SLOT_TOLERANCE)


def slot_time(index: int, cps: float) -> datetime:
    nominal = (index + 0.5) / cps
    second = math.floor(nominal)
    return datetime.fromtimestamp(second + (nominal - second) * (1 - FREE_TAIL), UTC)


def send_deadline(slot: datetime) -> datetime:
    """The last instant a dial for ``slot`` may leave: in the slot's second, and not bunched up."""
    return min(slot.replace(microsecond=0) + timedelta(seconds=1) - SEND_MARGIN, slot + MAX_LATE)
