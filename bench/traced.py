"""`python -m bench.traced serve|sandbox ...`: a callbridge command with tracemalloc on call.

Used by B8 to name the allocation sites that grow. The process runs the ordinary command; each
SIGUSR1 writes a tracemalloc snapshot to ``$BENCH_TRACEMALLOC_DIR/<n>.snap`` (the first one
also starts tracing, so the warm-up before it is neither traced nor slowed down).
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

# Two frames: the allocating line and its caller. More slows a loaded service down so much
# that calls time out, and what grows is then no longer what grows under steady load.
FRAMES = 2


def _install(directory: Path) -> None:
    numbers = itertools.count()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        n = next(numbers)
        if not tracemalloc.is_tracing():
            tracemalloc.start(FRAMES)
        snapshot = tracemalloc.take_snapshot()
        path = directory / f"{n}.snap"
        snapshot.dump(str(path) + ".part")
        os.replace(str(path) + ".part", path)

    signal.signal(signal.SIGUSR1, on_signal)


def main() -> None:
    directory = Path(os.environ["BENCH_TRACEMALLOC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    _install(directory)
    from bridge.cli import main as cli_main

    sys.exit(cli_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
