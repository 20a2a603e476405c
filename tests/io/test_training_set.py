"""The TEAHUPOO training-set reader (io/training_set.py) on the set the generator cuts from the small survey."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest

from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.io.exposure import read_exposure
from lumos_ops.sim import TrainingSet


def test_reader_streams_shards(training_dir) -> None:
    out, _, _ = training_dir
    ts = TrainingSet(out)
    assert len(ts) == 150 and ts.n_shards == 3 and ts.stamp_size == 40
    seen = 0
    for rows, array in ts.iter_shards():
        assert isinstance(array, np.memmap)
        assert len(rows) == array.shape[0]
        np.testing.assert_array_equal(np.asarray(array[:2]), ts.images(rows.stamp_id.to_numpy()[:2]))
        seen += len(rows)
    assert seen == 150
    ids = np.array([149, 3, 64, 3])
    batch = ts.images(ids)
    assert batch.shape == (4, 2, 40, 40)
    np.testing.assert_array_equal(batch[1], batch[3])
    np.testing.assert_array_equal(batch[2], ts.shard(1)[0])
    assert sorted(np.concatenate([ts.indices(s) for s in ("train", "val", "test")]).tolist()) == list(range(150))
    with pytest.raises(LumosValueError):
        ts.images([150])
    clone = pickle.loads(pickle.dumps(ts))  # what a spawned data-loader worker receives
    assert clone._shards == {} and len(pickle.dumps(ts)) < 200_000
    np.testing.assert_array_equal(clone.images([7]), ts.images([7]))


def test_damaged_files_are_one_error_naming_the_file(training_dir, tmp_path) -> None:
    """An empty shard or a truncated meta table: an InputFileError naming the file, not a traceback."""
    out, _, _ = training_dir
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "shards" / "shard-00002.npy").write_bytes(b"")
    with pytest.raises(InputFileError, match="shard-00002.npy: not a readable .npy shard"):
        TrainingSet(broken).shard(2)
    data = (broken / "meta.parquet").read_bytes()
    (broken / "meta.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="meta.parquet: not a readable Parquet table"):
        TrainingSet(broken)


def test_a_set_made_again_in_its_folder_is_whole_or_not_a_set(training_dir, small_survey, tmp_path) -> None:
    """Regenerating into an earlier set's folder removes its manifest first: a run that fails part-way
    leaves a folder no reader takes for a set (not new shards under the old manifest). A folder with
    another kind of manifest (a survey's) is refused before anything is written."""
    import pandas as pd

    from lumos_ops.sim import TeahupooConfig, generate_training_set

    out, _, config = training_dir
    again = tmp_path / "again"
    shutil.copytree(out, again)
    catalog = pd.read_parquet(small_survey.catalog_path)
    with pytest.raises(InputFileError):
        generate_training_set(config, [*small_survey.exposure_paths, str(tmp_path / "missing.fits")], catalog, again)
    with pytest.raises(InputFileError, match="no training-set manifest"):
        TrainingSet(again)
    with pytest.raises(InputFileError, match="not a training set's manifest"):
        generate_training_set(config, small_survey.exposure_paths, catalog, small_survey.out_dir)
    assert json.loads((small_survey.out_dir / "manifest.json").read_text()).get("format") != "lumos-teahupoo"
    made = generate_training_set(TeahupooConfig(n_stamps=20, shard_size=64, seed=5, stamp_size=40),
                                 small_survey.exposure_paths, catalog, again)
    assert len(TrainingSet(again)) == 20 and made.manifest_path == again / "manifest.json"
    assert json.loads((again / "survey.json").read_text())["name"] == "paus"  # written before the manifest
    # the CCD shape is recorded: a model trained from any working folder gets the same CCD scale
    ny, nx = read_exposure(small_survey.exposure_paths[0]).shape
    assert json.loads(made.manifest_path.read_text())["ccd_shape"] == [ny, nx]
    from lumos_ops.lumos.train import infer_ccd_shape

    manifest = json.loads(made.manifest_path.read_text())
    manifest["exposures"] = ["sim/exposures/made-elsewhere.fits"]  # relative to another working folder
    made.manifest_path.write_text(json.dumps(manifest))
    assert infer_ccd_shape(again) == (ny, nx) != (4096, 2048)


def test_atomic_files_get_the_mode_a_plain_write_gives(tmp_path) -> None:
    """Other accounts read what one account writes (umask 022: 0644), and a replaced file keeps its mode."""
    import os
    import stat

    from lumos_ops.io.atomic import write_text_atomic

    old = os.umask(0o022)
    try:
        fresh = write_text_atomic(tmp_path / "new.json", "{}")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        fresh.chmod(0o640)
        write_text_atomic(fresh, "{\"a\": 1}")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640 and fresh.read_text() == "{\"a\": 1}"
    finally:
        os.umask(old)
