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
    """``{"package": "lumos-ops", "version": V}`` plus, where the package sits in a git checkout (an
    editable install), ``git_commit`` (HEAD) and ``git_modified`` (tracked files differ from it).
    Without git or outside a checkout (an installed wheel) only the version."""
    import lumos_ops

    info: dict[str, object] = {"package": "lumos-ops"}
    try:
        info["version"] = importlib.metadata.version("lumos-ops")
    except importlib.metadata.PackageNotFoundError:
        info["version"] = getattr(lumos_ops, "__version__", None)
    root = Path(lumos_ops.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=30)
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return info
    info["git_commit"] = commit.stdout.strip()
    info["git_modified"] = bool(status.stdout.strip())
    return info
