"""The LUMOS mixture's one table form: Mixtures <-> alpha_k/mu_k/sigma_k/truncated columns."""

import numpy as np
import pandas as pd
import pytest

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.mixture_table import (
    Mixtures,
    has_mixture,
    is_mixture_column,
    mixture_columns,
    mixtures_from_arrays,
    mixtures_from_table,
)


def _mixtures(n=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return Mixtures(alpha=rng.dirichlet(np.ones(k), n), mu=rng.normal(5, 2, (n, k)), sigma=rng.uniform(1, 2, (n, k)),
                    truncated=np.arange(n) % 2 == 0)


def test_columns_round_trip_through_csv_and_parquet(tmp_path):
    mix = _mixtures()
    columns = mixture_columns(mix)
    assert list(columns) == [f"{p}_{k}" for p in ("alpha", "mu", "sigma") for k in range(3)] + ["truncated"]
    frame = pd.DataFrame({"ref_id": np.arange(4), **columns, "median": 1.0})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    for back in (frame, pd.read_csv(tmp_path / "t.csv"), pd.read_parquet(tmp_path / "t.parquet")):
        got = mixtures_from_table(back)
        for name in ("alpha", "mu", "sigma", "truncated"):
            np.testing.assert_array_equal(getattr(got, name), getattr(mix, name))
    assert [c for c in frame.columns if is_mixture_column(c)] == list(columns)
    assert has_mixture(frame) and not has_mixture(frame[["ref_id", "median"]])


def test_rows_of_other_methods_and_missing_flags():
    """In a long table the rows of other methods are NaN; a missing ``truncated`` reads as False
    (not ``bool(nan)``), a missing column too."""
    mix = _mixtures(n=2)
    lumos = pd.DataFrame({"method": "lumos", **mixture_columns(mix)})
    table = pd.concat([lumos, pd.DataFrame({"method": ["aperture"] * 2})], ignore_index=True)
    got = mixtures_from_table(table)
    assert got.truncated.tolist() == [True, False, False, False]
    assert np.isnan(got.alpha[2:]).all() and got.alpha.shape == (4, 3)
    assert not mixtures_from_table(lumos.drop(columns="truncated")).truncated.any()
    sub = got[np.array([True, False, True, False])]
    assert len(sub) == 2 and sub.truncated.tolist() == [True, False]
    np.testing.assert_array_equal(sub.args[1][0], mix.mu[0])


@pytest.mark.parametrize("drop", [["sigma_2"], ["alpha_0", "alpha_1", "alpha_2"], ["mu_1"]])
def test_incomplete_mixture_columns_are_refused(drop):
    frame = pd.DataFrame(mixture_columns(_mixtures())).drop(columns=drop)
    with pytest.raises(LumosValueError, match="alpha_k, mu_k and sigma_k"):
        mixtures_from_table(frame)


def test_database_rows():
    mix = _mixtures(n=3, k=2)
    got = mixtures_from_arrays(list(mix.alpha), [list(r) for r in mix.mu], list(mix.sigma), [True, None, False])
    np.testing.assert_array_equal(got.mu, mix.mu)
    assert got.truncated.tolist() == [True, False, False]
    assert len(mixtures_from_arrays([], [], [], [])) == 0
