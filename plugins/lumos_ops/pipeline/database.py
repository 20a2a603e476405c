"""PostgreSQL access: engines and the versioned SQL migrations of ``sql/migrations``.

Migrations are plain SQL files named ``V<NNN>__<what>.sql``. :func:`upgrade` applies the missing
ones in order, each in its own transaction, under an advisory lock, and records them (with their
SHA-256) in ``lumos.schema_migrations``; running it again does nothing. :func:`check_schema`
raises when the database is behind the code or an applied migration was edited afterwards.

The migrations create two cluster-wide NOLOGIN roles (:data:`WRITER_ROLE`, :data:`READER_ROLE`),
which needs superuser or CREATEROLE. A schema owner without either runs :func:`upgrade` after an
administrator has created them once with :func:`create_roles` (``lumos db create-roles``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import sqlalchemy as sa

from lumos_ops.exceptions import DatabaseError

__all__ = [
    "older_schema_is_one_error",
    "DATABASE_URL_ENV",
    "SQL_DIR_ENV",
    "Migration",
    "sql_dir",
    "load_migrations",
    "make_engine",
    "database_url_from_env",
    "applied_versions",
    "upgrade",
    "check_schema",
    "grant_roles",
    "create_roles",
    "missing_roles",
    "CREATE_ROLES_SQL",
    "redact_url",
    "WRITER_ROLE",
    "READER_ROLE",
]

WRITER_ROLE = "lumos_writer"
"""NOLOGIN role (created by the migrations) with read/write access for the pipeline."""

READER_ROLE = "lumos_reader"
"""NOLOGIN role (created by the migrations) with read-only access for people running SQL."""

DATABASE_URL_ENV = "LUMOS_DATABASE_URL"
"""Environment variable holding the SQLAlchemy URL used by the CLI (outside Airflow)."""

SQL_DIR_ENV = "LUMOS_SQL_DIR"
"""Environment variable overriding the location of the ``sql/`` folder (e.g. in a Docker image)."""

CREATE_ROLES_SQL = f"""\
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{WRITER_ROLE}') THEN
        CREATE ROLE {WRITER_ROLE} NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
        CREATE ROLE {READER_ROLE} NOLOGIN;
    END IF;
END
$$;"""
"""The administrator's step of :func:`create_roles` as SQL (idempotent; superuser or CREATEROLE)."""

logger = logging.getLogger(__name__)

_MIGRATION_RE = re.compile(r"^V(\d{3,})__([a-z0-9_]+)\.sql$")
_LOCK_ID = 0x4C554D4F  # "LUMO": advisory lock serialising concurrent upgrades


@dataclasses.dataclass(frozen=True)
class Migration:
    """One versioned migration file."""

    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file content."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def sql_dir() -> Path:
    """The ``sql/`` folder (``migrations/``, ``queries/``): the one place code looks for it.

    ``$LUMOS_SQL_DIR`` when set, else the package resource ``lumos_ops/sql``
    (``importlib.resources``). The SQL lives in the repository's top-level ``sql/``; the package
    holds ``plugins/lumos_ops/sql``, a relative symbolic link to it, so a source checkout (editable
    install) reads the top-level files and a built wheel carries a copy of them (setuptools follows
    the link; package data ``**/*.sql``).

    Raises
    ------
    DatabaseError
        The folder found has no ``migrations/`` (e.g. a checkout without symbolic links).
    """
    env = os.environ.get(SQL_DIR_ENV)
    path = Path(env) if env else _packaged_sql_dir()
    if not (path / "migrations").is_dir():
        raise DatabaseError(f"{path / 'migrations'}: no migrations folder; set {SQL_DIR_ENV} to the sql/ directory")
    return path


def _packaged_sql_dir() -> Path:
    from importlib.resources import files

    resource = files("lumos_ops") / "sql"
    if not isinstance(resource, Path):
        raise DatabaseError(f"lumos_ops is not installed as files ({resource!r}); set {SQL_DIR_ENV} to the sql/ directory")
    return resource


def load_migrations(directory: str | os.PathLike[str] | None = None) -> list[Migration]:
    """Migrations of ``directory`` (default ``sql_dir()/migrations``) sorted by version.

    Raises
    ------
    DatabaseError
        A file does not follow ``V<NNN>__<name>.sql`` or two files share a version.
    """
    folder = Path(directory) if directory else sql_dir() / "migrations"
    out: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_RE.match(path.name)
        if not match:
            raise DatabaseError(f"{path}: migration files must be named V<NNN>__<lower_snake_name>.sql")
        version = int(match[1])
        if version in out:
            raise DatabaseError(f"{path}: version {version} is also used by {out[version].path.name}")
        out[version] = Migration(version=version, name=match[2], path=path, sql=path.read_text())
    return [out[v] for v in sorted(out)]


def redact_url(url: str | sa.URL) -> str:
    """The URL with any password replaced by ``***`` (safe to log)."""
    return sa.make_url(url).render_as_string(hide_password=True)


def database_url_from_env() -> str:
    """The photometry database's URL when no ``--url`` is given.

    ``$LUMOS_DATABASE_URL`` when set, else the persistent local cluster of ``lumos db start``
    (:class:`~lumos_ops.pipeline.local_postgres.LocalCluster`) when it runs.

    Raises
    ------
    DatabaseError
        Neither: the message says to set ``LUMOS_DATABASE_URL`` or run ``lumos db start``.
    """
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    from lumos_ops.pipeline.local_postgres import LocalCluster

    cluster = LocalCluster()
    local = cluster.running_url()
    if local:
        logger.info("using the local PostgreSQL of `lumos db start` (%s)", cluster.root)
        return local
    stopped = f" (the local cluster in {cluster.root} is stopped)" if cluster.state() is not None else ""
    raise DatabaseError(
        f"no photometry database{stopped}: set {DATABASE_URL_ENV} or run `lumos db start`; "
        f"{DATABASE_URL_ENV} is a SQLAlchemy URL such as postgresql+psycopg2://user@host:5432/lumos "
        "(put the password in ~/.pgpass or PGPASSWORD, not in the URL)"
    )


_LOST_SQLSTATES = ("57P01", "57P02", "57P03")
"""Server shutting down (admin, crash) or not accepting connections yet: the connection is gone."""


def connection_lost(exc: BaseException | None) -> str | None:
    """The driver's first message line when ``exc``, or an error it was raised from or during, says
    that the connection to the database is gone or could not be made (psycopg2's own
    ``OperationalError``, or a server error of SQLSTATE class 08 or a server shutdown; SQLAlchemy's
    invalidated connection); None for anything else, including the ``OperationalError`` subclasses
    that are not about the connection (statement timeout, deadlock, full disk)."""
    import psycopg2

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        code = getattr(orig, "pgcode", None)
        lost = ((isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated)
                or type(orig) is psycopg2.OperationalError  # the driver's own: refused, closed, reset
                or (isinstance(orig, psycopg2.OperationalError) and code is not None
                    and (code.startswith("08") or code in _LOST_SQLSTATES)))
        if lost:
            lines = str(orig).strip().splitlines()
            return lines[0] if lines else type(orig).__name__
        exc = exc.__cause__ or exc.__context__
    return None


def make_engine(url: str | sa.URL, **kwargs: object) -> sa.Engine:
    """A SQLAlchemy engine for PostgreSQL through psycopg2, whatever driver the URL names.

    The bulk writer uses psycopg2's ``COPY`` support, so ``postgresql://`` and
    ``postgresql+psycopg://`` URLs are mapped to ``postgresql+psycopg2://``.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise DatabaseError(f"{redact_url(parsed)}: lumos-ops needs PostgreSQL (postgresql+psycopg2://...)")
    parsed = parsed.set(drivername="postgresql+psycopg2")
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(parsed, **kwargs)  # type: ignore[arg-type]


_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS lumos;
CREATE TABLE IF NOT EXISTS lumos.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


def applied_versions(engine: sa.Engine) -> dict[int, str]:
    """``{version: checksum}`` of the migrations recorded in the database (empty when none)."""
    try:
        with engine.connect() as conn:
            exists = conn.execute(sa.text("SELECT to_regclass('lumos.schema_migrations') IS NOT NULL")).scalar()
            if not exists:
                return {}
            rows = conn.execute(sa.text("SELECT version, checksum FROM lumos.schema_migrations")).all()
    except sa.exc.OperationalError as exc:
        if connection_lost(exc) is not None:
            raise  # the command line says so in one line (lumos_ops.cli.database_unreachable)
        raise DatabaseError(f"{redact_url(engine.url)}: cannot connect ({exc.orig})") from None
    return {int(v): str(c) for v, c in rows}


def upgrade(engine: sa.Engine, *, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the missing migrations; idempotent.

    Returns
    -------
    list of int
        Versions applied by this call (empty when the schema was current).

    Raises
    ------
    DatabaseError
        Unreachable database, a failing migration (rolled back; the message names the file), or
        an applied migration whose file changed since.
    """
    migrations = load_migrations() if migrations is None else migrations
    done: list[int] = []
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
            conn.execute(sa.text(_BOOTSTRAP))
            applied = {
                int(v): str(c)
                for v, c in conn.execute(sa.text("SELECT version, checksum FROM lumos.schema_migrations")).all()
            }
            _check_checksums(migrations, applied)
            if any(m.version not in applied for m in migrations):
                _check_can_create_roles(conn)
            for migration in migrations:
                if migration.version in applied:
                    continue
                try:
                    with conn.begin_nested():
                        conn.exec_driver_sql(migration.sql)
                        conn.execute(
                            sa.text("INSERT INTO lumos.schema_migrations (version, name, checksum) "
                                    "VALUES (:v, :n, :c)"),
                            {"v": migration.version, "n": migration.name, "c": migration.checksum},
                        )
                except sa.exc.DBAPIError as exc:
                    raise DatabaseError(f"{migration.path.name}: migration failed and was rolled back: {exc.orig}") from None
                done.append(migration.version)
    except sa.exc.OperationalError as exc:
        raise DatabaseError(f"{redact_url(engine.url)}: cannot connect ({exc.orig})") from None
    return done


def missing_roles(conn: sa.Connection) -> list[str]:
    """Which of :data:`WRITER_ROLE`, :data:`READER_ROLE` do not exist in the cluster."""
    rows = conn.execute(sa.text("SELECT rolname FROM pg_roles WHERE rolname IN (:w, :r)"),
                        {"w": WRITER_ROLE, "r": READER_ROLE}).scalars()
    present = set(rows)
    return [role for role in (WRITER_ROLE, READER_ROLE) if role not in present]


def _check_can_create_roles(conn: sa.Connection) -> None:
    """Raise before migrating when the roles are missing and the connected user may not create them."""
    missing = missing_roles(conn)
    if not missing:
        return
    user, may = conn.execute(sa.text(
        "SELECT current_user, rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")).one()
    if may:
        return
    raise DatabaseError(
        f"role(s) {', '.join(missing)} do not exist and {user!r} may not create them (neither superuser "
        f"nor CREATEROLE); an administrator creates them once with "
        f"`lumos db create-roles --url <admin URL> --owner {user}` "
        f"or runs this SQL as a superuser:\n{CREATE_ROLES_SQL}\n"
        f"GRANT {WRITER_ROLE}, {READER_ROLE} TO {user} WITH ADMIN OPTION;  -- lets it run `lumos db grant`\n"
        f"then run `lumos db upgrade` again as {user!r}"
    )


def create_roles(engine: sa.Engine, *, owner: str | None = None) -> list[str]:
    """Create the NOLOGIN roles :data:`WRITER_ROLE` and :data:`READER_ROLE` when missing; idempotent.

    The administrator's step before a schema owner without CREATEROLE runs :func:`upgrade`
    (``lumos db create-roles``); the SQL is :data:`CREATE_ROLES_SQL`.

    Parameters
    ----------
    engine : sa.Engine
        Connected as a superuser or a user with CREATEROLE.
    owner : str, optional
        Schema owner given the roles ``WITH ADMIN OPTION``, so that it can grant them to login
        users (``lumos db grant``).

    Returns
    -------
    list of str
        Roles created by this call (empty when both existed).

    Raises
    ------
    DatabaseError
        The connected user may not create roles, or ``owner`` does not exist.
    """
    quote = engine.dialect.identifier_preparer.quote_identifier
    try:
        with engine.begin() as conn:
            missing = missing_roles(conn)
            if missing:
                conn.execute(sa.text(CREATE_ROLES_SQL))
            if owner:
                if not conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :u"), {"u": owner}).scalar():
                    raise DatabaseError(f"role {owner!r} does not exist; create the schema owner first")
                conn.execute(sa.text(f"GRANT {quote(WRITER_ROLE)}, {quote(READER_ROLE)} TO {quote(owner)} "
                                     "WITH ADMIN OPTION"))
    except sa.exc.OperationalError as exc:
        raise DatabaseError(f"{redact_url(engine.url)}: cannot connect ({exc.orig})") from None
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(
            f"creating roles failed: {exc.orig}; connect as a superuser or a user with CREATEROLE"
        ) from None
    return missing


def _check_checksums(migrations: list[Migration], applied: dict[int, str]) -> None:
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise DatabaseError(
                f"{migration.path.name}: this migration was applied with a different content (checksum "
                f"{recorded[:12]}..., file {migration.checksum[:12]}...); never edit applied migrations, add a new one"
            )


@contextlib.contextmanager
def older_schema_is_one_error(engine: sa.Engine) -> Iterator[None]:
    """Turn a read that names a table or column the database lacks (SQLSTATE 42P01, 42703: its schema
    is older than this lumos-ops) into one :class:`DatabaseError` saying to upgrade it. Readers need
    no other check, so a newer client still reads a database that holds what it asks for."""
    try:
        yield
    except sa.exc.ProgrammingError as exc:
        if getattr(exc.orig, "pgcode", None) not in ("42P01", "42703"):
            raise
        reason = str(exc.orig).strip().splitlines()[0]
        raise DatabaseError(f"{redact_url(engine.url)}: {reason}: the schema is older than this lumos-ops; "
                            "run `lumos db upgrade`") from None


def check_schema(engine: sa.Engine, *, migrations: list[Migration] | None = None) -> int:
    """Raise unless every migration is applied unchanged; return the schema version.

    Raises
    ------
    DatabaseError
        Missing migrations (run ``lumos db upgrade``) or edited ones.
    """
    migrations = load_migrations() if migrations is None else migrations
    applied = applied_versions(engine)
    _check_checksums(migrations, applied)
    missing = [m.version for m in migrations if m.version not in applied]
    if missing:
        raise DatabaseError(
            f"{redact_url(engine.url)}: schema is missing migration(s) {missing}; run `lumos db upgrade`"
        )
    return max(applied) if applied else 0


def grant_roles(engine: sa.Engine, *, writers: Sequence[str] = (), readers: Sequence[str] = ()) -> None:
    """Make existing login users members of :data:`WRITER_ROLE` / :data:`READER_ROLE`.

    Raises
    ------
    DatabaseError
        A user does not exist or the caller may not grant the roles (run as the schema owner).
    """
    quote = engine.dialect.identifier_preparer.quote_identifier
    try:
        with engine.begin() as conn:
            for role, users in ((WRITER_ROLE, writers), (READER_ROLE, readers)):
                for user in users:
                    exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :u"), {"u": user}).scalar()
                    if not exists:
                        raise DatabaseError(f"role {user!r} does not exist; create the login user first")
                    conn.execute(sa.text(f"GRANT {quote(role)} TO {quote(user)}"))
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(f"granting roles failed: {exc.orig}") from None
