"""Local PostgreSQL servers: a throwaway one (tests, ``lumos demo``, benchmarks) and the persistent
one of ``lumos db start`` (a user's own data on one machine).

Both run from the PostgreSQL binaries found on the machine (``pg_ctl``, ``initdb``) and listen on
127.0.0.1 only. :class:`LocalPostgres` keeps its data directory under a temporary folder and is
destroyed by :meth:`LocalPostgres.stop`. :class:`LocalCluster` keeps its data under the user's data
directory (:func:`local_cluster_dir`), survives stop/start and reboots, and authenticates with a
random password kept in a ``pgpass`` file next to it (mode 0600), never in the URL.
PostgreSQL refuses to run as root; when the current user is root the binaries run as the OS user
``postgres`` through ``runuser``.

Example
-------
>>> with LocalPostgres.start() as pg:          # doctest: +SKIP
...     engine = sqlalchemy.create_engine(pg.url)
>>> url = LocalCluster().start()               # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from lumos_ops.exceptions import DatabaseError

__all__ = ["LUMOS_HOME_ENV", "LocalCluster", "LocalPostgres", "find_pg_bin", "free_port", "local_cluster_dir"]

LUMOS_HOME_ENV = "LUMOS_HOME"
"""Environment variable naming lumos-ops' data directory (the local cluster lives in its ``postgres/``)."""

_PG_BIN_CANDIDATES: tuple[str, ...] = tuple(
    f"/usr/lib/postgresql/{v}/bin" for v in (17, 16, 15, 14, 13)
) + ("/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/bin", "/usr/bin")


def find_pg_bin(pg_bin: str | os.PathLike[str] | None = None) -> Path:
    """Directory holding ``initdb`` and ``pg_ctl``.

    Parameters
    ----------
    pg_bin : path-like, optional
        Explicit directory; otherwise ``$LUMOS_PG_BIN``, then the usual install locations,
        then ``$PATH``.

    Raises
    ------
    DatabaseError
        No PostgreSQL server binaries were found.
    """
    candidates = [pg_bin, os.environ.get("LUMOS_PG_BIN"), *_PG_BIN_CANDIDATES]
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    raise DatabaseError(
        "no PostgreSQL server binaries (initdb, pg_ctl) found; install PostgreSQL >= 13 "
        "or set LUMOS_PG_BIN to the directory holding them"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    """Whether the server could listen on 127.0.0.1:``port`` (it sets SO_REUSEADDR too, so closed
    connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _server_user() -> str | None:
    """OS user the server binaries run as: ``postgres`` when we are root, else ourselves (None)."""
    return "postgres" if os.geteuid() == 0 else None


def _run_pg(
    argv: list[str], *, run_as: str | None, cwd: Path, log_file: Path, timeout_s: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run a server binary (as ``run_as`` through ``runuser`` when given); raise with the log on failure."""
    full = ["runuser", "-u", run_as, "--", *argv] if run_as else argv
    result = subprocess.run(full, capture_output=True, text=True, check=False, cwd=cwd, timeout=timeout_s)
    if result.returncode != 0:
        log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        raise DatabaseError(
            f"{Path(argv[0]).name} failed (exit {result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()} {log}".strip()
        )
    return result


class _ClusterFiles:
    """Where a cluster under ``root`` keeps its data and its server log."""

    root: Path

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        """The server log."""
        return self.root / "server.log"


@dataclasses.dataclass
class LocalPostgres(_ClusterFiles):
    """A running throwaway PostgreSQL server; create it with :meth:`start`.

    Attributes
    ----------
    root : Path
        Temporary folder holding the data directory and the server log.
    port : int
        TCP port on 127.0.0.1.
    user : str
        Superuser name (trust authentication on loopback only; no password exists).
    database : str
        Database created for the caller.
    pg_bin : Path
        Directory of the server binaries.
    """

    root: Path
    port: int
    user: str
    database: str
    pg_bin: Path
    _run_as: str | None = None
    _stopped: bool = False

    @property
    def url(self) -> str:
        """SQLAlchemy URL of :attr:`database` (psycopg2 driver, no password)."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of another database on this server."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    @classmethod
    def start(
        cls,
        *,
        database: str = "lumos",
        port: int | None = None,
        pg_bin: str | os.PathLike[str] | None = None,
        timeout_s: float = 30.0,
    ) -> LocalPostgres:
        """Initialise a new cluster in a temporary folder and start its server.

        Parameters
        ----------
        database : str, keyword-only
            Name of the database created once the server is up.
        port : int, optional
            TCP port; a free one by default.
        pg_bin : path-like, optional
            Directory of the server binaries (see :func:`find_pg_bin`).
        timeout_s : float, keyword-only
            Seconds to wait for the server to accept connections.

        Raises
        ------
        DatabaseError
            ``initdb`` or the server failed; the message quotes the server log.
        """
        if not database.replace("_", "").isalnum():
            raise DatabaseError(f"database={database!r}: use letters, digits and underscores only")
        bin_dir = find_pg_bin(pg_bin)
        run_as = _server_user()
        root = Path(tempfile.mkdtemp(prefix="lumos-pg-"))
        os.chmod(root, 0o755)
        if run_as:
            shutil.chown(root, user=run_as)
        user = "lumos_admin"
        server = cls(root=root, port=port or free_port(), user=user, database=database, pg_bin=bin_dir, _run_as=run_as)
        try:
            server._run(
                [str(bin_dir / "initdb"), "-D", str(server.data_dir), "-U", user, "-A", "trust",
                 "-E", "UTF8", "--no-sync", "--locale=C"],
            )
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={server.port} -c unix_socket_directories={root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=60"
            )
            server._run(
                [str(bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-l", str(server.log_file),
                 "-o", options, "-w", "-t", str(int(timeout_s)), "start"],
            )
            server._run(
                [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(server.port), "-U", user, "-d", "postgres",
                 "-v", "ON_ERROR_STOP=1", "-q", "-c", f'CREATE DATABASE "{database}"'],
            )
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, argv: list[str]) -> None:
        _run_pg(argv, run_as=self._run_as, cwd=self.root, log_file=self.log_file)

    def create_database(self, name: str) -> str:
        """Create another database on this server and return its SQLAlchemy URL."""
        if not name.replace("_", "").isalnum():
            raise DatabaseError(f"database name {name!r}: use letters, digits and underscores only")
        self._run(
            [str(self.pg_bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres",
             "-v", "ON_ERROR_STOP=1", "-q", "-c", f'CREATE DATABASE "{name}"'],
        )
        return self.url_for(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if (self.data_dir / "postmaster.pid").exists():
                argv = [str(self.pg_bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"]
                if self._run_as:
                    argv = ["runuser", "-u", self._run_as, "--", *argv]
                subprocess.run(argv, capture_output=True, check=False, timeout=60)
        finally:
            for _ in range(3):
                shutil.rmtree(self.root, ignore_errors=True)
                if not self.root.exists():
                    break
                time.sleep(0.2)

    def __enter__(self) -> LocalPostgres:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def local_cluster_dir(environ: dict[str, str] | None = None) -> Path:
    """Folder of the persistent local cluster of ``lumos db start``.

    ``$LUMOS_HOME/postgres`` when ``LUMOS_HOME`` is set, else ``$XDG_DATA_HOME/lumos/postgres``,
    else ``~/.local/share/lumos/postgres``.

    Parameters
    ----------
    environ : mapping, optional
        Environment to read (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    if env.get(LUMOS_HOME_ENV):
        return Path(env[LUMOS_HOME_ENV]).expanduser() / "postgres"
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]).expanduser() / "lumos" / "postgres"
    return Path.home() / ".local" / "share" / "lumos" / "postgres"


@dataclasses.dataclass
class LocalCluster(_ClusterFiles):
    """The persistent local PostgreSQL of ``lumos db start`` / ``stop`` / ``status``.

    The folder holds ``data/`` (the cluster), ``server.log``, ``pgpass`` (the superuser's random
    password, mode 0600, named by the URL's ``passfile`` parameter) and ``state.json`` (port, URL,
    binaries), which later commands read to find the server. The server listens on 127.0.0.1
    only (no Unix socket) and requires the password (``scram-sha-256``).

    Parameters
    ----------
    root : Path, optional
        The folder (default :func:`local_cluster_dir`).

    Examples
    --------
    >>> cluster = LocalCluster()                   # doctest: +SKIP
    >>> url = cluster.start()                      # initdb on first use; idempotent
    >>> cluster.stop()                             # keeps the data
    """

    root: Path = dataclasses.field(default_factory=local_cluster_dir)
    user: str = "lumos_admin"
    database: str = "lumos"

    @property
    def state_file(self) -> Path:
        """JSON file recording the port, URL and binaries of the last start."""
        return self.root / "state.json"

    @property
    def passfile(self) -> Path:
        """libpq password file of :attr:`user` (mode 0600)."""
        return self.root / "pgpass"

    def state(self) -> dict[str, object] | None:
        """Content of :attr:`state_file`, or None before the first start.

        Raises
        ------
        DatabaseError
            The file exists but is not valid JSON.
        """
        if not self.state_file.is_file():
            return None
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError) as exc:
            raise DatabaseError(f"{self.state_file}: unreadable ({exc}); delete it and run `lumos db start`") from None
        return state if isinstance(state, dict) else None

    def initialised(self) -> bool:
        """Whether ``initdb`` has created the cluster."""
        return (self.data_dir / "PG_VERSION").is_file()

    def url_for(self, database: str, port: int) -> str:
        """SQLAlchemy URL of ``database`` (psycopg2 driver; the password stays in :attr:`passfile`)."""
        from urllib.parse import quote

        if not database.replace("_", "").isalnum():
            raise DatabaseError(f"database name {database!r}: use letters, digits and underscores only")
        return (f"postgresql+psycopg2://{self.user}@127.0.0.1:{port}/{database}"
                f"?passfile={quote(str(self.passfile), safe='/')}")

    def is_running(self) -> bool:
        """Whether this cluster's server runs (``pg_ctl status``)."""
        state = self.state()
        if state is None or not self.initialised():
            return False
        argv = [str(self._pg_bin(state) / "pg_ctl"), "-D", str(self.data_dir), "status"]
        try:
            _run_pg(argv, run_as=_server_user(), cwd=self.root, log_file=self.log_file, timeout_s=30)
        except DatabaseError:
            return False
        return True

    def running_url(self) -> str | None:
        """URL of :attr:`database` when the server runs, else None."""
        if not self.is_running():
            return None
        state = self.state() or {}
        return str(state["url"]) if state.get("url") else None

    def start(
        self, *, port: int | None = None, pg_bin: str | os.PathLike[str] | None = None, timeout_s: float = 60.0
    ) -> str:
        """Create the cluster on first use, start its server and create :attr:`database`; idempotent.

        Parameters
        ----------
        port : int, optional
            TCP port; default the port of the previous start when it is free, else a free one.
        pg_bin : path-like, optional
            Directory of the server binaries (default the previous start's, else :func:`find_pg_bin`).
        timeout_s : float, keyword-only
            Seconds to wait for the server to accept connections.

        Returns
        -------
        str
            SQLAlchemy URL of :attr:`database`.

        Raises
        ------
        DatabaseError
            No binaries, a folder the server's OS user cannot write, or ``initdb`` / the server failed
            (the message quotes the server log).
        """
        state = self.state() or {}
        bin_dir = find_pg_bin(pg_bin or state.get("pg_bin"))  # type: ignore[arg-type]
        run_as = _server_user()
        self._prepare_root(run_as)
        if not self.initialised():
            self._initdb(bin_dir, run_as)
        if self.is_running():
            return str(state["url"])
        previous = state.get("port")
        if port is None:
            port = previous if isinstance(previous, int) and _port_is_free(previous) else free_port()
        self._write_state({"port": port, "url": self.url_for(self.database, port), "pg_bin": str(bin_dir),
                           "data_dir": str(self.data_dir)})
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories=''"
        _run_pg([str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options,
                 "-w", "-t", str(int(timeout_s)), "start"],
                run_as=run_as, cwd=self.root, log_file=self.log_file, timeout_s=timeout_s + 30)
        self._create_database(port)
        return self.url_for(self.database, port)

    def stop(self, *, timeout_s: float = 60.0) -> bool:
        """Stop the server (``pg_ctl stop -m fast``: sessions end, data is flushed and kept).

        Returns
        -------
        bool
            True when a running server was stopped, False when none ran.
        """
        if not self.is_running():
            return False
        state = self.state() or {}
        _run_pg([str(self._pg_bin(state) / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
                 "-t", str(int(timeout_s)), "stop"],
                run_as=_server_user(), cwd=self.root, log_file=self.log_file, timeout_s=timeout_s + 30)
        return True

    def _pg_bin(self, state: dict[str, object]) -> Path:
        recorded = state.get("pg_bin")
        return find_pg_bin(str(recorded) if recorded else None)

    def _prepare_root(self, run_as: str | None) -> None:
        """Create the folder (mode 0700, owned by the server's OS user); check that user can write it."""
        new = [folder for folder in (self.root, *self.root.parents) if not folder.exists()]
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        if not run_as:
            return
        shutil.chown(self.root, user=run_as)
        reachable = subprocess.run(["runuser", "-u", run_as, "--", "test", "-w", str(self.root)],
                                   capture_output=True, check=False, timeout=30)
        if reachable.returncode != 0:
            if new:
                shutil.rmtree(new[-1], ignore_errors=True)  # only the empty folders made just now
            raise DatabaseError(
                f"{self.root}: PostgreSQL refuses to run as root and the OS user {run_as!r} cannot reach this "
                f"folder (a parent folder, e.g. a private home directory, is closed to it); "
                f"set {LUMOS_HOME_ENV} to a folder it can reach, e.g. `export {LUMOS_HOME_ENV}=/var/lib/lumos`, "
                "or run as a normal user"
            )

    def _initdb(self, bin_dir: Path, run_as: str | None) -> None:
        password = secrets.token_hex(24)
        pwfile = self.root / ".initdb-password"
        _write_private(pwfile, password + "\n")
        if run_as:
            shutil.chown(pwfile, user=run_as)
        try:
            _run_pg([str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user, "--pwfile", str(pwfile),
                     "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--locale=C"],
                    run_as=run_as, cwd=self.root, log_file=self.log_file)
        finally:
            pwfile.unlink(missing_ok=True)
        _write_private(self.passfile, f"127.0.0.1:*:*:{self.user}:{password}\n")

    def _write_state(self, state: dict[str, object]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        _write_private(tmp, json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    def _create_database(self, port: int) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(self.url_for("postgres", port), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"),
                                      {"d": self.database}).scalar()
                if not exists:
                    conn.execute(sa.text(f'CREATE DATABASE "{self.database}"'))
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(f"{self.root}: cannot create database {self.database!r}: {exc.orig}") from None
        finally:
            engine.dispose()


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file readable by its owner only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
