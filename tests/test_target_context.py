"""The per-exposure target context (target_context.py) as prepare_targets builds it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lumos_ops.flags import Flag
from lumos_ops.io.exposure import Exposure
from lumos_ops.measure import prepare_targets
from lumos_ops.target_context import TargetContext


def test_prepare_targets_fields(scene: tuple[Exposure, pd.DataFrame, np.ndarray]) -> None:
    exposure, catalog, _ = scene
    ctx = prepare_targets(exposure, catalog)
    assert isinstance(ctx, TargetContext)
    assert ctx.catalog["ref_id"].tolist() == catalog["ref_id"].tolist()
    np.testing.assert_allclose(ctx.x, catalog["x"])
    assert ctx.stamps.data.shape == ctx.models.shape == (9, 60, 60)
    assert ctx.models.dtype == np.float32
    on = ctx.on_image
    assert on.sum() == 8
    # Unit-flux models: what is missing from the stamp is the light outside it.
    assert np.all(ctx.models[on].sum(axis=(1, 2)) > 0.97) and np.all(ctx.models[on].sum(axis=(1, 2)) <= 1.0001)
    assert not ctx.models[~on].any()
    edge = catalog["x"].to_numpy() > 290
    assert ctx.base_flags[edge][0] == Flag.EDGE
    assert ctx.base_flags[~on][0] == Flag.OFF_IMAGE
    assert (ctx.base_flags[on & ~edge] == 0).all()
    with pytest.raises(AttributeError):
        ctx.x = ctx.y  # type: ignore[misc]
    sub = ctx.take(slice(2, 5))
    assert sub.n == 3 and sub.catalog.index.tolist() == [0, 1, 2]
    assert sub.photometry_inputs.size == 94  # holds the 45 px annulus, same centre pixel as 60 px stamps
