"""The renderer's tables are kept in files that later processes read instead of rebuilding them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lumos_ops.render import psf, sersic
from lumos_ops.render.tables import stored_table


@pytest.mark.parametrize(("module", "name"), [(sersic, "sersic"), (psf, "moffat")])
def test_stored_table_is_the_built_one(module, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUMOS_TABLE_CACHE_DIR", str(tmp_path))
    build = getattr(module, f"_build_{name}_table")
    first = stored_table(name, build, [module.__file__])
    files = list(tmp_path.glob(f"{name}-*.npz"))
    assert len(files) == 1
    again = stored_table(name, lambda: pytest.fail("read from the file, not rebuilt"), [module.__file__])
    np.testing.assert_array_equal(again.values, first.values)
    np.testing.assert_array_equal(again.param, first.param)
    files[0].write_bytes(b"not a table")  # a damaged file is rebuilt
    np.testing.assert_array_equal(stored_table(name, build, [module.__file__]).values, first.values)


def test_changed_code_gets_another_file_and_empty_variable_turns_files_off(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUMOS_TABLE_CACHE_DIR", str(tmp_path))
    code = tmp_path / "builder.py"
    code.write_text("v = 1\n")
    stored_table("sersic", sersic._build_sersic_table, [str(code)])
    code.write_text("v = 2\n")
    stored_table("sersic", sersic._build_sersic_table, [str(code)])
    assert len(list(tmp_path.glob("sersic-*.npz"))) == 2
    monkeypatch.setenv("LUMOS_TABLE_CACHE_DIR", "")
    empty = tmp_path / "off"
    stored_table("sersic", sersic._build_sersic_table, [str(code)])
    assert not empty.exists() and len(list(tmp_path.glob("sersic-*.npz"))) == 2
