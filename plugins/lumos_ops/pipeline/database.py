"""PostgreSQL access: engines and the versioned SQL migrations of ``sql/migrations``.

Migrations are plain SQL files named ``V<NNN>__<what>.sql``. :func:`upgrade` applies the missing
ones in order, each in its own transaction, under an advisory lock, and records them (with their
SHA-256) in ``lumos.schema_migrations``; running it again does nothing. :func:`check_schema`
raises when the database is behind the code or an applied migration was edited afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

from lumos_ops.exceptions import DatabaseError

__all__ = [
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
    """The ``sql/`` folder: ``$LUMOS_SQL_DIR`` or the repository's (three levels above this package)."""
    env = os.environ.get(SQL_DIR_ENV)
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "sql"
    if not (path / "migrations").is_dir():
        raise DatabaseError(f"{path / 'migrations'}: no migrations folder; set {SQL_DIR_ENV} to the sql/ directory")
    return path


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
    """The URL in ``$LUMOS_DATABASE_URL``.

    Raises
    ------
    DatabaseError
        The variable is not set.
    """
    url = os.environ.get(DATABASE_URL_ENV)
    if not url:
        raise DatabaseError(
            f"{DATABASE_URL_ENV} is not set; export it, e.g. postgresql+psycopg2://user@host:5432/lumos "
            "(put the password in ~/.pgpass or PGPASSWORD, not in the URL)"
        )
    return url


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


def _check_checksums(migrations: list[Migration], applied: dict[int, str]) -> None:
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise DatabaseError(
                f"{migration.path.name}: this migration was applied with a different content (checksum "
                f"{recorded[:12]}..., file {migration.checksum[:12]}...); never edit applied migrations, add a new one"
            )


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
