"""Fixtures of the survey tests: the real SDSS frames of ``/work/shared/realdata`` (skipped when
absent), the example SDSS survey file and a small catalogue of sources detected on the g frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from survey_paths import realdata_frame


@pytest.fixture
def sdss_g() -> Path:
    return realdata_frame("sdss_g.fits.bz2")


@pytest.fixture
def sdss_catalog(sdss_g, tmp_path) -> Path:
    """The 12 brightest clean sources of the SDSS g frame (sep, 1.5 sigma), at least 35 px from the
    edges, as an external catalogue (x, y in pixels; r50 in arcsec from the second moments; i_auto
    from the g flux in nanomaggies)."""
    sep = pytest.importorskip("sep")
    from astropy.io import fits

    data = fits.getdata(sdss_g).astype(np.float64)
    objects = sep.extract(data, 1.5, err=float(np.nanstd(data[np.abs(data) < 1.0])), minarea=8)
    ny, nx = data.shape
    keep = (objects["flag"] == 0) & (objects["x"] > 35) & (objects["x"] < nx - 36) & (objects["y"] > 35) & (objects["y"] < ny - 36)
    objects = objects[keep][np.argsort(-objects[keep]["flux"])[:12]]
    catalog = pd.DataFrame({
        "ref_id": np.arange(len(objects), dtype=np.int64),
        "x": objects["x"], "y": objects["y"],
        "r50": np.clip(1.177 * np.sqrt(objects["a"] * objects["b"]) * 0.396, 0.2, 3.0),
        "sersic_n": 1.0,
        "q": np.clip(objects["b"] / objects["a"], 0.2, 1.0),
        "pa": np.degrees(objects["theta"]) % 180.0,
        "i_auto": 22.5 - 2.5 * np.log10(objects["flux"]),
    })
    path = tmp_path / "sdss_catalog.csv"
    catalog.to_csv(path, index=False)
    return path
