"""``lumos db`` and ``lumos night`` (check, upgrade, query; run --no-airflow, status, recover) on the throwaway PostgreSQL."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from lumos_ops.cli import main

from nightdata import NIGHT

pytestmark = pytest.mark.postgres


def test_cli_db_and_night_commands(db_url, night_store, tmp_path, capsys, monkeypatch):
    store, _ = night_store
    assert main(["db", "check", "--url", db_url]) == 2
    assert "lumos db upgrade" in capsys.readouterr().err
    # an unmigrated schema: one line saying what to run, not an SQL traceback
    for argv in (["db", "query", "night_summary", "-p", "limit=1", "--url", db_url],
                 ["night", "status", "--night", NIGHT, "--db-url", db_url]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "does not exist" in err and "run `lumos db upgrade`" in err
    assert main(["db", "upgrade", "--url", db_url]) == 0
    assert "applied V001" in capsys.readouterr().out
    assert main(["db", "upgrade", "--url", db_url]) == 0
    assert "already current" in capsys.readouterr().out
    monkeypatch.setenv("LUMOS_DATABASE_URL", db_url)
    monkeypatch.setenv("LUMOS_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["night", "run", "--night", NIGHT, "--no-airflow", "--store", str(store.root)]) == 0
    assert "2 done, 0 failed" in capsys.readouterr().out
    assert main(["db", "query", "night_summary", "-p", "limit=1"]) == 0
    assert NIGHT in capsys.readouterr().out
    assert main(["db", "query", "night_summary"]) == 2
    assert "needs parameter(s) limit" in capsys.readouterr().err
    assert main(["db", "query", "night_summary", "-p", "limit=abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid input syntax" in err and "check the --param values (limit=abc)" in err
    assert main(["night", "status", "--night", "2020-01-01"]) == 0
    assert "night 2020-01-01: no exposure registered (never run" in capsys.readouterr().out
    # the night measured again under another version, in this process; a second run has nothing left
    argv = ["night", "reprocess", "--first-night", NIGHT, "--methods", "aperture", "--model-versions", "aperture=aperture-9",
            "--store", str(store.root)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 of 2 registered exposures to measure (aperture=aperture-9)" in out and NIGHT in out
    assert main(argv) == 0
    assert "0 of 2 registered exposures" in capsys.readouterr().out
    assert main(["night", "reprocess", "--first-night", NIGHT, "--methods", "lumos", "--model-versions", "x",
                 "--store", str(store.root)]) == 2
    assert "use method=version pairs" in capsys.readouterr().err
    assert main(["night", "status", "--night", NIGHT]) == 0
    assert "n_done" not in (out := capsys.readouterr().out) and "done=2" in out and "stale=0" in out
    # an exposure left running by a dead task: recent ones are left alone, old ones are recovered
    with sa.create_engine(db_url).begin() as conn:
        conn.execute(sa.text("UPDATE lumos.exposures SET status = 'running', started_at = now() - interval '3 hours' "
                             "WHERE expnum = 5000 AND ccd = 1"))
    assert main(["night", "recover", "--older-than", "4"]) == 0
    assert "0 exposure(s) recovered" in capsys.readouterr().out
    assert main(["night", "recover", "--older-than", "2", "--night", NIGHT]) == 0
    assert "exp0005000_ccd01.fits: marked failed" in capsys.readouterr().out
    assert main(["night", "status", "--night", NIGHT]) == 1
    out = capsys.readouterr().out
    assert "stale=1" in out and "interrupted" in out
    # what a stopped `night run` prints to do: accepted for one night, refused for every night
    assert main(["night", "recover", "--older-than", "0", "--runs-older-than", "0", "--night", NIGHT]) == 0
    assert "0 exposure(s) recovered" in capsys.readouterr().out
    assert main(["night", "recover", "--older-than", "0"]) == 2
    assert "only with --night" in capsys.readouterr().err


def test_an_unreachable_database_is_one_line(capsys):
    """Refused on loopback port 1: no traceback, what to do, exit 1 (not a bad input)."""
    url = "postgresql://lumos@127.0.0.1:1/lumos"
    for argv in (["night", "status", "--night", NIGHT, "--db-url", url],
                 ["night", "recover", "--older-than", "1", "--db-url", url]):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert err.startswith("lumos night: error: the database cannot be reached (") and "lumos db start" in err


def test_a_night_through_an_unmigrated_airflow_is_one_error(tmp_path):
    """A fresh AIRFLOW_HOME: `lumos night run` says to migrate Airflow's metadata database (exit 2), no traceback."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LUMOS_DAGS"))}
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow")
    (tmp_path / "store").mkdir()
    done = subprocess.run([sys.executable, "-m", "lumos_ops.cli", "night", "run", "--night", NIGHT, "--store",
                           str(tmp_path / "store"), "--db-url", "postgresql://lumos@127.0.0.1:1/lumos"],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "is not migrated: run `airflow db migrate` once" in done.stderr and "Traceback" not in done.stderr


def test_a_night_through_airflow_stops_on_sigterm(tmp_path):
    """SIGTERM (systemd, CI, ``timeout``) stops ``lumos night run`` at once, the Airflow run's process
    group with it; Airflow's in-process task runner would only call the task's on_kill and go on."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LUMOS_DAGS"))}
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow")
    (tmp_path / "store").mkdir()
    cli = subprocess.Popen([sys.executable, "-m", "lumos_ops.cli", "night", "run", "--night", NIGHT, "--store",
                            str(tmp_path / "store"), "--db-url", "postgresql://lumos@127.0.0.1:1/lumos"],
                           env=env, stderr=subprocess.PIPE, text=True)
    deadline, child = time.monotonic() + 120, None
    while child is None and time.monotonic() < deadline and cli.poll() is None:
        for status in map(lambda p: p / "stat", Path("/proc").glob("[0-9]*")):
            try:
                fields = status.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == cli.pid:  # the parent pid: the Airflow run's child process
                child = int(status.parent.name)
        time.sleep(0.05)
    assert child is not None, "the Airflow run was never started in a child process"
    started = time.monotonic()
    cli.send_signal(signal.SIGTERM)
    _, err = cli.communicate(timeout=60)
    assert cli.returncode == 130 and time.monotonic() - started < 30, err[-2000:]
    assert "was stopped; `lumos night recover --older-than 0" in err and "Traceback" not in err
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()
