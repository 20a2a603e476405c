"""Forked worker pools end under a parent SIGTERM handler that does not exit (as under Airflow)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from lumos_ops.sim.worker_pool import forked_pool


@pytest.fixture
def sigterm_ignored_by_parent() -> Iterator[list[int]]:
    """Install a SIGTERM handler that only records the signal, as a task runner's does; restore after."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        yield seen
    finally:
        signal.signal(signal.SIGTERM, previous)


def _pid(_: int) -> int:
    return os.getpid()


def _worker_handlers(_: int) -> tuple[object, object]:
    return signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(120)
def test_workers_exit_after_the_block(sigterm_ignored_by_parent: list[int]) -> None:
    with forked_pool(2) as pool:
        pids = set(pool.map(_pid, range(8), chunksize=1))
        handlers = pool.map(_worker_handlers, range(2))
    assert pids and os.getpid() not in pids
    assert not any(_alive(pid) for pid in pids)
    assert all(term == signal.SIG_DFL and intr == signal.SIG_IGN for term, intr in handlers)
    assert sigterm_ignored_by_parent == []


@pytest.mark.timeout(120)
def test_workers_are_terminated_when_the_block_raises(sigterm_ignored_by_parent: list[int]) -> None:
    pids: set[int] = set()
    with pytest.raises(RuntimeError, match="stop here"), forked_pool(2) as pool:
        pids |= set(pool.map(_pid, range(8), chunksize=1))
        raise RuntimeError("stop here")
    assert pids and not any(_alive(pid) for pid in pids)


_SLOW_START: list[bool] = [False]


def _slow_start_in_child() -> None:
    if _SLOW_START[0]:
        time.sleep(0.3)  # a worker still starting when the pool is terminated


os.register_at_fork(after_in_child=_slow_start_in_child)


@pytest.mark.timeout(60)
def test_a_pool_terminated_while_its_workers_start_ends(sigterm_ignored_by_parent: list[int]) -> None:
    _SLOW_START[0] = True
    try:
        with pytest.raises(RuntimeError, match="at once"), forked_pool(2):
            raise RuntimeError("at once")  # SIGTERM reaches workers before their initializer has run
    finally:
        _SLOW_START[0] = False
    assert sigterm_ignored_by_parent == []
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())  # the parent's mask restored
