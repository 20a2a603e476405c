"""PostgreSQL advisory locks held for one night (session level, on a connection of their own).

``pg_advisory_lock(key, hashtext(night))`` blocks until no other session holds the same pair, so
two processes that take the same night's lock take turns, whatever host they run on; the lock is
released at the end of the block, or by the server if the process dies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

__all__ = ["REPORT_LOCK", "RUN_LOCK", "night_lock"]

REPORT_LOCK = 0x4C554D52  # "LUMR"
"""One report of a night at a time (:func:`lumos_ops.pipeline.report.report_night`)."""

RUN_LOCK = 0x4C554D4E  # "LUMN"
"""One in-process run of a night at a time (:func:`lumos_ops.pipeline.night.run_night`)."""


@contextlib.contextmanager
def night_lock(engine: sa.Engine, night: str, key: int) -> Iterator[None]:
    """Hold the advisory lock ``(key, hashtext(night))`` for the duration of the block."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k, hashtext(:n))"), {"k": key, "n": night})
        conn.commit()
        try:
            yield
        except BaseException:
            # The block's error is the one to report: a connection lost with the database releases
            # the lock on the server anyway, so a failed unlock must not replace that error.
            with contextlib.suppress(sa.exc.DBAPIError):
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k, hashtext(:n))"), {"k": key, "n": night})
                conn.commit()
            raise
        conn.execute(sa.text("SELECT pg_advisory_unlock(:k, hashtext(:n))"), {"k": key, "n": night})
        conn.commit()
