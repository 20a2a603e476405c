"""The TEAHUPOO training-set reader (io/training_set.py) on the set the generator cuts from the small survey."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from lumos_ops.exceptions import LumosValueError
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
