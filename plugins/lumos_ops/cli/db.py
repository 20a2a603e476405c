"""``lumos db``: apply and check the photometry database migrations, run the example queries.

The database URL comes from ``--url`` or ``$LUMOS_DATABASE_URL``; keep passwords out of URLs
(use ``~/.pgpass`` or ``PGPASSWORD``): URLs are printed with the password masked.
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lumos db upgrade | check | grant | query``."""
    parser = subparsers.add_parser("db", help="photometry database: migrations and example queries")
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, helptext in (("upgrade", "apply missing migrations of sql/migrations (idempotent)"),
                           ("check", "fail unless every migration is applied unchanged")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--url", help="SQLAlchemy URL (default: $LUMOS_DATABASE_URL)")
        p.set_defaults(func=_upgrade if name == "upgrade" else _check)
    p = sub.add_parser("grant", help="grant the writer/reader roles to existing login users")
    p.add_argument("--writer", action="append", default=[], metavar="USER", help="user of the pipeline")
    p.add_argument("--reader", action="append", default=[], metavar="USER", help="read-only user")
    p.add_argument("--url", help="SQLAlchemy URL of the schema owner (default: $LUMOS_DATABASE_URL)")
    p.set_defaults(func=_grant)
    p = sub.add_parser("query", help="run an example query of sql/queries (read-only)")
    p.add_argument("name", nargs="?", help="query name; omit to list them")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE", help="bind parameter")
    p.add_argument("--url", help="SQLAlchemy URL (default: $LUMOS_DATABASE_URL)")
    p.set_defaults(func=_query)


def _engine(args: argparse.Namespace):
    from lumos_ops.pipeline.database import database_url_from_env, make_engine

    return make_engine(args.url or database_url_from_env())


def _upgrade(args: argparse.Namespace) -> int:
    from lumos_ops.pipeline.database import check_schema, redact_url, upgrade

    engine = _engine(args)
    try:
        applied = upgrade(engine)
        version = check_schema(engine)
    finally:
        engine.dispose()
    done = f"applied {', '.join(f'V{v:03d}' for v in applied)}" if applied else "already current"
    print(f"{redact_url(engine.url)}: schema version {version} ({done})")
    return 0


def _check(args: argparse.Namespace) -> int:
    from lumos_ops.pipeline.database import check_schema, redact_url

    engine = _engine(args)
    try:
        version = check_schema(engine)
    finally:
        engine.dispose()
    print(f"{redact_url(engine.url)}: schema version {version}, all migrations applied")
    return 0


def _grant(args: argparse.Namespace) -> int:
    from lumos_ops.pipeline.database import READER_ROLE, WRITER_ROLE, grant_roles

    engine = _engine(args)
    try:
        grant_roles(engine, writers=args.writer, readers=args.reader)
    finally:
        engine.dispose()
    for user in args.writer:
        print(f"granted {WRITER_ROLE} to {user}")
    for user in args.reader:
        print(f"granted {READER_ROLE} to {user}")
    return 0


def _query(args: argparse.Namespace) -> int:
    from lumos_ops.exceptions import LumosValueError
    from lumos_ops.pipeline.queries import list_queries, query_parameters, run_query

    if not args.name:
        for name in list_queries():
            print(f"{name}  ({', '.join(':' + p for p in query_parameters(name)) or 'no parameters'})")
        return 0
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise LumosValueError(f"--param {item!r}: use KEY=VALUE")
        params[key.strip()] = value
    engine = _engine(args)
    try:
        frame = run_query(engine, args.name, params)
    finally:
        engine.dispose()
    print(frame.to_string(index=False) if len(frame) else "(no rows)")
    return 0
