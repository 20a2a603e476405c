"""sql_dir(): the one locator of the SQL files, from a source checkout and from a built wheel."""

import tomllib
from pathlib import Path

import pytest

from lumos_ops.exceptions import DatabaseError
from lumos_ops.pipeline.database import SQL_DIR_ENV, load_migrations, sql_dir
from lumos_ops.pipeline.queries import list_queries

REPO = Path(__file__).resolve().parents[2]


def _names(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.sql"))


def test_sql_dir_is_the_top_level_sql_through_the_package(monkeypatch):
    monkeypatch.delenv(SQL_DIR_ENV, raising=False)
    found = sql_dir()
    assert found.samefile(REPO / "sql")
    assert found.parent.samefile(REPO / "plugins" / "lumos_ops")  # a package resource, not a path from __file__
    assert _names(found) == _names(REPO / "sql") and len(_names(found)) >= 10
    assert [m.path.name for m in load_migrations()][0] == "V001__core_schema.sql"
    assert "night_summary" in list_queries()


def test_the_wheel_ships_the_sql_as_package_data():
    link = REPO / "plugins" / "lumos_ops" / "sql"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "**/*.sql" in config["package-data"]["lumos_ops"]


def test_environment_override_and_missing_migrations(monkeypatch, tmp_path):
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "V001__only.sql").write_text("SELECT 1;")
    monkeypatch.setenv(SQL_DIR_ENV, str(tmp_path))
    assert sql_dir() == tmp_path
    assert [m.name for m in load_migrations()] == ["only"]
    monkeypatch.setenv(SQL_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DatabaseError, match=f"no migrations folder; set {SQL_DIR_ENV}"):
        sql_dir()
