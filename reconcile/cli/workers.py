"""`--workers N`: the same command in N - 1 more local processes, workers of one run."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def local_workers(workers: int, part: dt.timedelta | None) -> Iterator[list[int]]:
    """Start `workers - 1` copies of this command beside it; wait for them at the end.

    They run with `--workers 1 --part <part>` (the same parts as this one's, so all join one
    run) and no progress bar, each in a session of its own (a terminal's Ctrl-C reaches this
    process only, which passes it on once); their summaries go nowhere (this process prints
    the run's). Yields, once the block ends, their exit codes; a block cut short (a signal,
    an error) passes SIGTERM on to them first.
    """
    codes: list[int] = []
    if workers <= 1 or part is None:
        yield codes
        return
    argv = [sys.executable, "-m", "reconcile", *sys.argv[1:]]
    argv += ["--workers", "1", "--part", f"{int(part.total_seconds())}s", "--no-progress"]
    children = [
        subprocess.Popen(  # noqa: S603 - this very command, again
            argv, stdout=subprocess.DEVNULL, env=os.environ.copy(), start_new_session=True
        )
        for _ in range(workers - 1)
    ]
    log.info("started %s more worker process(es): %s", len(children),
             ", ".join(str(child.pid) for child in children))  # fmt: skip
    try:
        yield codes
    except BaseException:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait()
        raise
    codes.extend(child.wait() for child in children)
