"""``lumos_ops.provenance.code_provenance``: the code that made a report."""

import subprocess
from pathlib import Path

import lumos_ops
from lumos_ops.provenance import code_provenance


def test_a_checkout_records_its_commit_and_whether_it_is_modified():
    root = Path(lumos_ops.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    info = code_provenance()
    assert info["package"] == "lumos-ops" and info["version"]
    if head.returncode != 0:  # an installed copy outside a checkout: the version alone
        assert "git_commit" not in info
        return
    assert info["git_commit"] == head.stdout.strip()
    status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, check=True)
    assert info["git_modified"] is bool(status.stdout.strip())


def test_without_git_only_the_version(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    info = code_provenance()
    assert info["version"] and "git_commit" not in info and "git_modified" not in info
