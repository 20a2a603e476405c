"""``lumos_ops.provenance.code_provenance``: the code that made a report."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import lumos_ops
from lumos_ops import provenance
from lumos_ops.provenance import code_provenance


def test_a_checkout_records_its_commit_and_whether_the_package_is_modified():
    root = Path(lumos_ops.__file__).resolve().parent
    tracked = subprocess.run(["git", "-C", str(root), "ls-files", "--error-unmatch", "__init__.py"],
                             capture_output=True, text=True)
    info = code_provenance()
    assert info["package"] == "lumos-ops" and info["version"]
    if tracked.returncode != 0:  # an installed copy: the version alone
        assert "git_commit" not in info
        return
    assert re.fullmatch("[0-9a-f]{40}", info["git_commit"])
    assert isinstance(info["git_modified"], bool)


def _copy_package(tmp_path: Path) -> Path:
    """A copy of the package's ``__init__.py`` in a fresh git repository that does not track it."""
    copy = tmp_path / "repo" / "lumos_ops" / "__init__.py"
    copy.parent.mkdir(parents=True)
    shutil.copy(lumos_ops.__file__, copy)
    return copy


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_copy_inside_another_repository_records_no_commit(tmp_path, monkeypatch):
    copy = _copy_package(tmp_path)
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    monkeypatch.setattr(lumos_ops, "__file__", str(copy))
    info = provenance.code_provenance()
    assert info["version"] and "git_commit" not in info


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_only_the_package_counts_as_modified(tmp_path, monkeypatch):
    copy = _copy_package(tmp_path)
    repo = tmp_path / "repo"
    (repo / "report.json").write_text("{}")
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", *env, "-C", str(repo), "commit", "-q", "-m", "c"], check=True)
    monkeypatch.setattr(lumos_ops, "__file__", str(copy))
    (repo / "report.json").write_text('{"rerun": true}')  # a regenerated report: not the code
    assert provenance.code_provenance()["git_modified"] is False
    copy.write_text(copy.read_text() + "\n# changed\n")
    info = provenance.code_provenance()
    assert info["git_modified"] is True and re.fullmatch("[0-9a-f]{40}", info["git_commit"])


def test_without_git_only_the_version(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    info = code_provenance()
    assert info["version"] and "git_commit" not in info and "git_modified" not in info
