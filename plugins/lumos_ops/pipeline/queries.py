"""Example SQL queries of ``sql/queries`` (parameterised, read-only), runnable from Python and the CLI."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa

from lumos_ops.exceptions import LumosValueError
from lumos_ops.pipeline.database import older_schema_is_one_error, sql_dir

__all__ = ["list_queries", "load_query", "query_parameters", "run_query"]

_PARAM_RE = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")


def list_queries() -> list[str]:
    """Names of the example queries (file names without ``.sql``)."""
    return sorted(p.stem for p in (sql_dir() / "queries").glob("*.sql"))


def load_query(name: str) -> str:
    """SQL text of the query ``name``."""
    if name not in list_queries():
        raise LumosValueError(f"unknown query {name!r}; choose one of {', '.join(list_queries())}")
    return (sql_dir() / "queries" / f"{name}.sql").read_text()


def query_parameters(name: str) -> list[str]:
    """Bind parameters (``:name``) the query expects, in order of appearance."""
    text = "\n".join(line for line in load_query(name).splitlines() if not line.lstrip().startswith("--"))
    return list(dict.fromkeys(_PARAM_RE.findall(text)))


def run_query(engine: sa.Engine, name: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Run an example query with bound parameters in a read-only transaction.

    Raises
    ------
    LumosValueError
        Unknown query, a missing parameter (named in the message) or a value the database cannot
        read as the parameter's type.
    DatabaseError
        The schema lacks a table or column the query reads (run ``lumos db upgrade``).
    """
    params = dict(params or {})
    missing = [p for p in query_parameters(name) if p not in params]
    if missing:
        raise LumosValueError(f"query {name!r} needs parameter(s) {', '.join(missing)} (e.g. --param {missing[0]}=...)")
    try:
        with older_schema_is_one_error(engine), engine.connect() as conn:
            conn.execute(sa.text("SET TRANSACTION READ ONLY"))
            result = conn.execute(sa.text(load_query(name)), params)
            return pd.DataFrame(result.mappings().all(), columns=list(result.keys()))
    except sa.exc.DataError as exc:  # SQLSTATE class 22: a value of the wrong type or out of range
        reason = str(exc.orig).strip().splitlines()[0]
        raise LumosValueError(f"query {name!r}: {reason}; check the --param values "
                              f"({', '.join(f'{k}={v}' for k, v in params.items())})") from None
