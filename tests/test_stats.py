"""``lumos_ops.stats``: the block bootstrap behind every reported error."""

from __future__ import annotations

import numpy as np

from lumos_ops.stats import block_resamples


def test_block_resamples_draw_whole_groups_as_many_as_there_are():
    groups = np.array(["a", "b", "b", "c", "c", "c", "a"])
    draws = block_resamples(groups, groups.size, np.random.default_rng(0), 200)
    assert len(draws) == 200
    seen_sizes = set()
    for rows in draws:
        drawn = groups[rows]
        # each group drawn is drawn whole: its rows come in full blocks
        for name, size in (("a", 2), ("b", 2), ("c", 3)):
            assert np.sum(drawn == name) % size == 0
        # as many groups as the rows hold
        assert sum(np.sum(drawn == name) // size for name, size in (("a", 2), ("b", 2), ("c", 3))) == 3
        seen_sizes.add(rows.size)
    assert seen_sizes == {6, 7, 8, 9}  # 2+2+2 ... 3+3+3
    again = block_resamples(groups, groups.size, np.random.default_rng(0), 200)
    assert all(np.array_equal(x, y) for x, y in zip(draws, again))


def test_block_resamples_without_groups_draw_rows():
    draws = block_resamples(None, 5, np.random.default_rng(1), 3)
    assert [d.size for d in draws] == [5, 5, 5] and all(((d >= 0) & (d < 5)).all() for d in draws)
