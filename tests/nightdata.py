"""Tiny simulated nights for the pipeline tests: small FITS CCD images and a catalogue, and
co-adds of simulated SED fluxes written straight to the database (:func:`load_sed_coadds`).

Images are 160 x 160 pixels in ADU with round Gaussian sources at the catalogue positions on a flat
sky with Gaussian noise; headers follow the exposure contract. Bad inputs are written by
:func:`corrupt` so that each failure mode of the issue can be produced on demand.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from astropy.io import fits

from lumos_ops.constants import NB_BANDS
from lumos_ops.pipeline.keys import KeyTemplate
from lumos_ops.pipeline.writer import ModelVersion, load_catalog, register_model_versions, start_run
from lumos_ops.sim.population import draw_galaxies, njy_columns

__all__ = ["NIGHT", "IMAGE_SIZE", "BAD_KINDS", "SED_BANDS", "make_catalog", "make_exposure_bytes", "write_night", "write_catalog",
           "corrupt", "load_sed_coadds", "lumos_night"]

NIGHT = "2026-11-20"  # the night of the run_night and CLI night tests (the night_store fixture)
IMAGE_SIZE = 160
BAD_KINDS = ("truncated", "corrupt", "missing_header", "unknown_band", "nan_region", "empty")


def make_catalog(n_sources: int = 12, *, seed: int = 1) -> pd.DataFrame:
    """Catalogue with pixel positions well inside the images."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "ref_id": np.arange(1000, 1000 + n_sources, dtype=np.int64),
        "x": rng.uniform(35, IMAGE_SIZE - 35, n_sources),
        "y": rng.uniform(35, IMAGE_SIZE - 35, n_sources),
        "r50": rng.uniform(0.3, 0.8, n_sources),
        "sersic_n": np.full(n_sources, 1.0),
        "q": rng.uniform(0.5, 1.0, n_sources),
        "pa": rng.uniform(0, 180, n_sources),
        "i_auto": rng.uniform(19.0, 21.5, n_sources),
    })


def make_exposure_bytes(catalog: pd.DataFrame, *, expnum: int, ccd: int, band: str, seed: int,
                        exptime: float = 90.0, zp: float = 26.0) -> bytes:
    """One CCD image as FITS bytes (ADU, gain 2)."""
    rng = np.random.default_rng(seed)
    gain, sky = 2.0, 6.0  # e-/ADU, e-/s/pixel
    yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
    image = np.full((IMAGE_SIZE, IMAGE_SIZE), sky, dtype=np.float64)
    sigma = 1.2 / 0.263 / 2.355
    for row in catalog.itertuples():
        flux = 10 ** (-0.4 * (row.i_auto - zp))  # e-/s
        image += flux * np.exp(-((xx - row.x) ** 2 + (yy - row.y) ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    electrons = rng.poisson(image * exptime).astype(np.float64)
    adu = (electrons / gain).astype(np.float32)
    header = fits.Header()
    header.update({"EXPTIME": exptime, "FILTER": band, "PSFFWHM": 1.2, "GAIN": gain, "ZP": zp, "EPOCH": 0,
                   "EXPNUM": expnum, "CCDNUM": ccd, "MJD-OBS": 61000.1})
    buffer = io.BytesIO()
    fits.PrimaryHDU(adu, header=header).writeto(buffer)
    return buffer.getvalue()


def write_night(put, night: str, *, n_exposures: int = 2, n_ccds: int = 2, catalog: pd.DataFrame,
                first_expnum: int = 5000, template: str | None = None) -> list[str]:
    """Write a night's images with ``put(key, data)``; return the keys (CCD c uses band NB455 + 10 c)."""
    keys = []
    tmpl = KeyTemplate(template) if template else KeyTemplate()
    for e in range(n_exposures):
        for c in range(1, n_ccds + 1):
            key = tmpl.format(night, first_expnum + e, c)
            put(key, make_exposure_bytes(catalog, expnum=first_expnum + e, ccd=c, band=NB_BANDS[c - 1],
                                         seed=17 * e + c))
            keys.append(key)
    return keys


def corrupt(data: bytes, kind: str) -> bytes:
    """A bad version of valid FITS bytes."""
    if kind == "truncated":
        return data[: len(data) // 2]
    if kind == "corrupt":
        return b"this is not a FITS file" + bytes(range(256)) * 20
    if kind == "empty":
        return b""
    with fits.open(io.BytesIO(data)) as hdul:
        hdu = fits.PrimaryHDU(np.array(hdul[0].data), header=hdul[0].header.copy())
    if kind == "missing_header":
        del hdu.header["PSFFWHM"]
    elif kind == "unknown_band":
        hdu.header["FILTER"] = "NB999"
    elif kind == "nan_region":
        hdu.data[: int(IMAGE_SIZE * 0.8), :] = np.nan
    else:
        raise ValueError(f"unknown kind {kind!r}")
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()


def write_catalog(put, catalog: pd.DataFrame, key: str = "catalog.parquet") -> None:
    """Store the catalogue as Parquet."""
    buffer = io.BytesIO()
    catalog.to_parquet(buffer, index=False)
    put(key, buffer.getvalue())


def lumos_night(tmp_path, *, n_exposures: int, n_sources: int = 6, **config_options):
    """A night of ``n_exposures`` one-CCD images of ``n_sources`` in a directory store under
    ``tmp_path``, and the NightConfig that measures it with the first shipped LUMOS checkpoint
    (version ``lumos-default``; extra NightConfig options given). Skips the test when no
    checkpoint is shipped. Returns (store, catalog, keys, config)."""
    from pathlib import Path

    import pytest

    import lumos_ops
    from lumos_ops.pipeline.config import NightConfig
    from lumos_ops.pipeline.storage import LocalObjectStore

    shipped = sorted((Path(lumos_ops.__file__).parent / "models").glob("lumos-*.pt"))
    if not shipped:
        pytest.skip("no LUMOS checkpoint shipped in lumos_ops/models")
    store = LocalObjectStore(tmp_path / "store")
    catalog = make_catalog(n_sources)
    write_catalog(store.put_bytes, catalog)
    keys = write_night(store.put_bytes, NIGHT, n_exposures=n_exposures, n_ccds=1, catalog=catalog)
    config = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"), methods=("lumos",),
                         model_versions={"lumos": "lumos-default"}, measure_options={"model": str(shipped[0])},
                         **config_options)
    return store, catalog, keys, config


SED_BANDS = NB_BANDS[::2]
"""The 20 bands of :func:`load_sed_coadds`."""


def load_sed_coadds(engine, n: int = 60, *, noise: float = 0.0, seed: int = 3) -> pd.DataFrame:
    """Catalogue of simulated galaxies (zspec known, the last 5 without) and their co-adds in
    :data:`SED_BANDS`: ``aperture`` with ``noise`` x 5 % Gaussian scatter, ``lumos`` noiseless."""
    galaxies = draw_galaxies(np.random.default_rng(seed), n, i_range=(18.0, 21.0))
    galaxies["ref_id"] = np.arange(5000, 5000 + n)
    catalog = galaxies.assign(ra=0.0, dec=0.0, x=10.0, y=10.0)
    catalog.loc[catalog.index[-5:], "zspec"] = np.nan  # no spectrum: not scored
    load_catalog(engine, catalog, checksum="cat-1")
    run_id = start_run(engine, dag_id="t", dag_run_id="t1", night="2026-11-20", code_version="test", settings={})
    register_model_versions(engine, [ModelVersion("aperture-1", "aperture"), ModelVersion("lumos-test", "lumos", "lumos")])
    rng = np.random.default_rng(seed + 1)
    rows = []
    for method, version, scale in (("aperture", "aperture-1", 1.0), ("lumos", "lumos-test", 0.0)):
        for band, column in zip(NB_BANDS, njy_columns()):
            if band not in SED_BANDS:
                continue
            flux = galaxies[column].to_numpy()
            err = np.maximum(0.05 * flux, 1.0)
            rows.append(pd.DataFrame({
                "ref_id": galaxies["ref_id"], "band": band, "method": method, "model_version": version,
                "run_id": run_id, "n_exposures": 2, "n_used": 2, "flux_njy": flux + scale * noise * err * rng.normal(size=n),
                "flux_err_njy": err, "last_night": "2026-11-20",
            }))
    frame = pd.concat(rows)
    with engine.begin() as conn:
        frame.to_sql("coadds", conn, schema="lumos", if_exists="append", index=False)
    return galaxies


_STATE_SQL = {
    "rows": "SELECT count(*) FROM lumos.measurements",
    "duplicates": "SELECT count(*) FROM (SELECT 1 FROM lumos.measurements GROUP BY exposure_id, ref_id, method, "
                  "model_version HAVING count(*) > 1) d",
    "status": "SELECT status, count(*) FROM lumos.exposures GROUP BY 1",
    "rows_state": "SELECT rows_state, count(*) FROM lumos.exposure_rows GROUP BY 1",
    "n_measurements": "SELECT coalesce(sum(n_measurements), 0) FROM lumos.exposures",
    "coadds": "SELECT count(*) FROM lumos.coadds",
    "coadds_partial": "SELECT count(*) FROM lumos.coadds WHERE partial",
    "coadds_stale": "SELECT count(*) FROM lumos.coadds WHERE n_stale > 0",
    "coadd_n_used": "SELECT coalesce(sum(n_used), 0) FROM lumos.coadds",
    "open_runs": "SELECT count(*) FROM lumos.pipeline_runs WHERE finished_at IS NULL",
}
_GROUPED = {"status", "rows_state"}


def night_state(engine, keys) -> dict[str, object]:
    """What an operator would check, for the given ``keys``: rows, duplicates, exposure states
    (``status``, ``rows_state`` as {value: count}), co-adds and the open run records."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        return {k: dict(conn.execute(sa.text(_STATE_SQL[k])).all()) if k in _GROUPED
                else conn.execute(sa.text(_STATE_SQL[k])).scalar_one() for k in keys}
