"""Start and stop a throwaway local PostgreSQL server (tests, ``lumos demo``, benchmarks).

The server runs from the PostgreSQL binaries found on the machine (``pg_ctl``, ``initdb``),
listens on loopback only, keeps its data directory under a temporary folder and is destroyed
by :meth:`LocalPostgres.stop`. PostgreSQL refuses to run as root; when the current user is root
the binaries run as the OS user ``postgres`` through ``runuser``.

Example
-------
>>> with LocalPostgres.start() as pg:          # doctest: +SKIP
...     engine = sqlalchemy.create_engine(pg.url)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from lumos_ops.exceptions import DatabaseError

__all__ = ["LocalPostgres", "find_pg_bin", "free_port"]

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


@dataclasses.dataclass
class LocalPostgres:
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
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        """The server log."""
        return self.root / "server.log"

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
        run_as = "postgres" if os.geteuid() == 0 else None
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
        if self._run_as:
            argv = ["runuser", "-u", self._run_as, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=self.root)
        if result.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise DatabaseError(
                f"{Path(argv[4] if self._run_as else argv[0]).name} failed (exit {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()} {log}".strip()
            )

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
