"""``lumos db``: the local PostgreSQL, the photometry database migrations, roles and example queries.

``lumos db start`` / ``stop`` / ``status`` manage a persistent PostgreSQL on 127.0.0.1 under the
user's data directory (``$LUMOS_HOME/postgres``, else ``$XDG_DATA_HOME/lumos/postgres``, else
``~/.local/share/lumos/postgres``). The other actions take the database URL from ``--url``, else
``$LUMOS_DATABASE_URL``, else that local PostgreSQL when it runs. Keep passwords out of URLs (use
``~/.pgpass`` or ``PGPASSWORD``): URLs are printed with the password masked.
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


_URL_HELP = "SQLAlchemy URL (default: $LUMOS_DATABASE_URL, else the local PostgreSQL of `lumos db start`)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lumos db start | stop | status | upgrade | check | create-roles | grant | query``."""
    parser = subparsers.add_parser("db", help="photometry database: local server, migrations, roles, queries")
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    p = sub.add_parser("start", help="start the local PostgreSQL (created on first use) and apply the migrations")
    p.add_argument("--port", type=int, help="TCP port on 127.0.0.1 (default: the previous one, else a free one)")
    p.set_defaults(func=_start)
    sub.add_parser("stop", help="stop the local PostgreSQL (the data is kept)").set_defaults(func=_stop)
    sub.add_parser("status", help="whether the local PostgreSQL runs, and its URL").set_defaults(func=_status)
    for name, helptext in (("upgrade", "apply missing migrations of sql/migrations (idempotent)"),
                           ("check", "fail unless every migration is applied unchanged")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--url", help=_URL_HELP)
        p.set_defaults(func=_upgrade if name == "upgrade" else _check)
    p = sub.add_parser("create-roles", help="administrator's step: create the NOLOGIN roles lumos_writer and "
                                            "lumos_reader (superuser or CREATEROLE; idempotent)")
    p.add_argument("--url", help="SQLAlchemy URL of a superuser or CREATEROLE user (default: as --url above)")
    p.add_argument("--owner", metavar="USER", help="schema owner given both roles WITH ADMIN OPTION "
                                                   "(so that it can run `lumos db grant`)")
    p.add_argument("--print-sql", action="store_true", help="print the equivalent SQL instead of running it")
    p.set_defaults(func=_create_roles)
    p = sub.add_parser("grant", help="grant the writer/reader roles to existing login users")
    p.add_argument("--writer", action="append", default=[], metavar="USER", help="user of the pipeline")
    p.add_argument("--reader", action="append", default=[], metavar="USER", help="read-only user")
    p.add_argument("--url", help="SQLAlchemy URL of the schema owner (default: as --url above)")
    p.set_defaults(func=_grant)
    p = sub.add_parser("query", help="run an example query of sql/queries (read-only)")
    p.add_argument("name", nargs="?", help="query name; omit to list them")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE", help="bind parameter")
    p.add_argument("--url", help=_URL_HELP)
    p.set_defaults(func=_query)


def _start(args: argparse.Namespace) -> int:
    from lumos_ops.exceptions import LumosValueError
    from lumos_ops.pipeline.database import make_engine
    from lumos_ops.pipeline.local_postgres import LocalCluster

    cluster = LocalCluster()
    was_running = cluster.is_running()
    if was_running and args.port and (cluster.state() or {}).get("port") != args.port:
        raise LumosValueError(f"--port {args.port}: the local PostgreSQL already runs on another port; "
                              "run `lumos db stop` first to change it")
    url = cluster.start(port=args.port)
    version, done = _migrate(make_engine(url))
    print(f"local PostgreSQL {'already running' if was_running else 'started'} in {cluster.root}")
    print(f"database {cluster.database}: schema version {version} ({done})")
    print(f"URL: {url}")
    print("lumos commands use it when no --url / LUMOS_DATABASE_URL is given; for other tools:")
    print(f"export LUMOS_DATABASE_URL='{url}'")
    return 0


def _stop(args: argparse.Namespace) -> int:
    from lumos_ops.pipeline.local_postgres import LocalCluster

    cluster = LocalCluster()
    stopped = cluster.stop()
    print(f"local PostgreSQL in {cluster.root}: {'stopped (data kept)' if stopped else 'was not running'}")
    return 0


def _status(args: argparse.Namespace) -> int:
    """Exit status 0 when the local PostgreSQL runs, 3 when it does not (as ``pg_ctl status``)."""
    from lumos_ops.pipeline.local_postgres import LocalCluster

    cluster = LocalCluster()
    url = cluster.running_url()
    if url:
        print(f"local PostgreSQL in {cluster.root}: running\nURL: {url}")
        return 0
    state = "stopped" if cluster.initialised() else "not created yet"
    print(f"local PostgreSQL in {cluster.root}: {state}; start it with `lumos db start`")
    return 3


def _engine(args: argparse.Namespace):
    from lumos_ops.pipeline.database import database_url_from_env, make_engine

    return make_engine(args.url or database_url_from_env())


def _migrate(engine) -> tuple[int, str]:
    """Apply the missing migrations and check the schema; the version and what was done. Disposes of ``engine``."""
    from lumos_ops.pipeline.database import check_schema, upgrade

    try:
        applied = upgrade(engine)
        version = check_schema(engine)
    finally:
        engine.dispose()
    return version, f"applied {', '.join(f'V{v:03d}' for v in applied)}" if applied else "already current"


def _upgrade(args: argparse.Namespace) -> int:
    from lumos_ops.pipeline.database import redact_url

    engine = _engine(args)
    version, done = _migrate(engine)
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


def _create_roles(args: argparse.Namespace) -> int:
    from lumos_ops.pipeline.database import CREATE_ROLES_SQL, READER_ROLE, WRITER_ROLE, create_roles, redact_url

    if args.print_sql:
        print(CREATE_ROLES_SQL)
        if args.owner:
            print(f'GRANT {WRITER_ROLE}, {READER_ROLE} TO "{args.owner}" WITH ADMIN OPTION;')
        return 0
    engine = _engine(args)
    try:
        created = create_roles(engine, owner=args.owner)
    finally:
        engine.dispose()
    print(f"{redact_url(engine.url)}: " + (f"created {', '.join(created)}" if created else
                                           f"{WRITER_ROLE} and {READER_ROLE} already exist"))
    if args.owner:
        print(f"{args.owner} may grant {WRITER_ROLE} and {READER_ROLE} (WITH ADMIN OPTION)")
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
    print(frame.to_string(index=False, na_rep="NULL") if len(frame) else "(no rows)")  # the database stores no NaN
    return 0
