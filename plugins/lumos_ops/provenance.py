"""Which code made a result: the package version and, for a git checkout, its commit.

Reports record it (``lumos inject``, ``lumos validate``, the benchmarks that write JSON) so that a
committed figure can be traced to the code that measured it, and a rescored report to the code that
measured its table.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path


def code_provenance() -> dict[str, object]:
    """``{"package": "lumos-ops", "version": V}`` plus, where the package is tracked in a git checkout
    (an editable install), ``git_commit`` (HEAD) and ``git_modified`` (tracked files of the package
    differ from it; reports and other files outside it do not count). Without git, or for a copy
    that its checkout does not track (an installed wheel, even inside another repository), only the
    version. ``--no-optional-locks``: a report written while a commit runs does not take git's lock."""
    import lumos_ops

    info: dict[str, object] = {"package": "lumos-ops"}
    try:
        info["version"] = importlib.metadata.version("lumos-ops")
    except importlib.metadata.PackageNotFoundError:
        info["version"] = getattr(lumos_ops, "__version__", None)
    root = Path(lumos_ops.__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", "-C", str(root), *args], capture_output=True,
                              text=True, check=True, timeout=30).stdout

    try:
        git("ls-files", "--error-unmatch", "__init__.py")  # the package's own checkout, not one it sits in
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return info
    info["git_commit"] = commit.strip()
    info["git_modified"] = bool(status.strip())
    return info
