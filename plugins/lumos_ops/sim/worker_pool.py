"""Forked worker pools that always end: default signal handling in the workers, closed and joined.

The simulators fork their workers so that large read-only state (the sky, the draws, the shard
memmaps) is shared without pickling. A forked child inherits the parent's Python signal handlers:
under a scheduler or a test runner that installed a SIGTERM handler which does not exit (Airflow's
task runner does), ``Pool.terminate()`` — what ``with Pool(...)`` calls on exit — leaves idle
workers alive and its ``join()`` can wait for ever (a race: a worker that has not yet taken its stop
sentinel when the SIGTERM comes runs the inherited handler and lives on).
:func:`forked_pool` restores the default SIGTERM action and ignores SIGINT in every worker (the
parent handles Ctrl-C and terminates them), and on success ends the pool with ``close()`` +
``join()``, so workers exit on their own.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from collections.abc import Iterator
from multiprocessing.pool import Pool

__all__ = ["forked_pool"]


def _default_signals() -> None:
    """Worker initializer: SIGTERM kills the worker (one that came while it started, blocked until
    now, kills it here); SIGINT is left to the parent."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


@contextlib.contextmanager
def forked_pool(workers: int) -> Iterator[Pool]:
    """A pool of ``workers`` forked processes; closed and joined when the block ends, terminated
    (SIGTERM, default action) and joined when it raises.

    The workers are forked with SIGTERM blocked (so is the pool's worker-handler thread, which forks
    any replacement), and unblock it once their handler is the default: a worker terminated before
    its initializer ran would otherwise run the parent's inherited handler and live on (measured: a
    pool that raised right after its first tasks hung in ``terminate()`` once in a full test run).
    """
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_default_signals)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    try:
        yield pool
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()
