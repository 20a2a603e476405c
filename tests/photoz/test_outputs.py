"""Output locations of the photo-z commands: checked before any work, nothing left behind, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumos_ops.exceptions import InputFileError
from lumos_ops.io.atomic import replace_atomically
from lumos_ops.photoz.outputs import check_output_file, check_output_folder


def test_output_file_in_a_folder_to_create_is_accepted_without_creating_it(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "pz.csv"
    assert check_output_file(target, "--out") == target
    assert list(tmp_path.iterdir()) == []


def test_bad_output_files_are_one_error_naming_the_option(tmp_path: Path) -> None:
    (tmp_path / "pz.csv").mkdir()
    with pytest.raises(InputFileError, match=r"^--out .*pz.csv: is a folder; give a file name$"):
        check_output_file(tmp_path / "pz.csv", "--out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputFileError, match=r"^--out .*file/a/b.csv: .*file is a file, not a folder"):
        check_output_file(tmp_path / "file" / "a" / "b.csv", "--out")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (not writable, even by root)")
def test_unwritable_folder_is_one_error() -> None:
    with pytest.raises(InputFileError, match=r"^--out /proc/x.csv: cannot write in /proc \("):
        check_output_file("/proc/x.csv", "--out")


def test_output_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputFileError, match=r"^--report .*file/sub: .*file is a file, not a folder"):
        check_output_folder(tmp_path / "file" / "sub", "--report")
    with pytest.raises(InputFileError, match="file is a file, not a folder"):
        check_output_folder(tmp_path / "file", "--report")
    (tmp_path / "rep" / "plot.png").mkdir(parents=True)
    with pytest.raises(InputFileError, match=r"plot.png is a folder; remove it or choose another folder"):
        check_output_folder(tmp_path / "rep", "--report", ("a.json", "plot.png"))
    assert check_output_folder(tmp_path / "rep", "--report", ("a.json",)) == tmp_path / "rep"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file", "plot.png", "rep"]


def test_replace_atomically_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.png"
    replace_atomically(target, lambda tmp: Path(tmp).write_bytes(b"new"))
    assert target.read_bytes() == b"new"

    def fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        replace_atomically(target, fail)
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["out.png"]
