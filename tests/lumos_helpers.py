"""Helpers of the LUMOS tests: synthetic TEAHUPOO-layout sets, FITS exposures, a normalisation."""

import json

import numpy as np
import pandas as pd
from astropy.io import fits

from lumos_ops.constants import NB_BANDS
from lumos_ops.io.training_set import FORMAT_NAME, FORMAT_VERSION, TrainingSet
from lumos_ops.lumos.config import Normalization

STAMP = 60


def centred_gaussian(sigma_px: float, size: int = STAMP) -> np.ndarray:
    """A unit-flux circular Gaussian of ``sigma_px`` pixels at the centre of a ``size``-pixel stamp."""
    yy, xx = np.mgrid[:size, :size]
    centre = (size - 1) / 2.0
    profile = np.exp(-((xx - centre) ** 2 + (yy - centre) ** 2) / (2.0 * sigma_px**2))
    return profile / profile.sum()


def gaussian_models(n, rng, size=STAMP):
    yy, xx = np.mgrid[:size, :size] - size // 2
    width = rng.uniform(1.5, 3.0, n)
    dx, dy = rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)
    models = np.exp(-((xx - dx[:, None, None]) ** 2 + (yy - dy[:, None, None]) ** 2) / (2 * width[:, None, None] ** 2))
    return (models / models.sum(axis=(1, 2), keepdims=True)).astype(np.float32)


def write_training_set(path, n=96, shard_size=40, seed=0):
    rng = np.random.default_rng(seed)
    models = gaussian_models(n, rng)
    imag = rng.uniform(19.0, 23.0, n)
    flux = 10 ** (-0.4 * (imag - 25.0))
    sky = rng.uniform(3.0, 8.0, n)
    cutouts = sky[:, None, None] + flux[:, None, None] * models + rng.normal(0, 0.3, (n, STAMP, STAMP))
    images = np.stack([cutouts, models], axis=1).astype(np.float32)
    (path / "shards").mkdir(parents=True)
    shards = []
    for k, start in enumerate(range(0, n, shard_size)):
        name = f"shards/shard-{k:05d}.npy"
        np.save(path / name, images[start : start + shard_size])
        shards.append({"file": name, "n": int(min(shard_size, n - start))})
    split = np.where(np.arange(n) % 4 == 0, "val", "train")
    band_epoch = rng.integers(0, 80, n)  # the PAUS rows: narrow band index + 40 x camera epoch
    meta = pd.DataFrame({
        "stamp_id": np.arange(n), "shard": np.arange(n) // shard_size, "row": np.arange(n) % shard_size,
        "band": np.asarray(NB_BANDS)[band_epoch % 40], "epoch": band_epoch // 40, "band_epoch": band_epoch, "ccd": 1,
        "ccd_x": rng.uniform(0, 2047, n), "ccd_y": rng.uniform(0, 4095, n), "i_auto": imag,
        "r50": 0.5, "sersic_n": 1.0, "q": 1.0, "pa": 0.0, "dx": 0.0, "dy": 0.0, "flux": flux,
        "exptime": 100.0, "psf_fwhm": 1.0, "psf_beta": 3.5, "source_exposure": "x.fits", "split": split,
    })
    meta.to_parquet(path / "meta.parquet")
    manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "seed": seed, "n_stamps": n,
                "stamp_size": STAMP, "pixel_scale": 0.263, "shards": shards}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


NORM = Normalization(pixel_scale=0.3, model_scale=30.0, flux_scale=20.0, imag_mean=21.5, imag_std=1.2,
                     background_mean=5.0, background_std=2.0, ccd_shape=(200, 300))


def write_exposure(path, *, seed, n=23, zp=26.0, band="NB685"):
    """A flat-sky 200 x 300 FITS exposure (6 e-/s/pixel) with a fixed catalogue of n targets."""
    rng = np.random.default_rng(seed)
    data = rng.normal(600.0, 15.0, (200, 300)).astype(np.float32)  # ADU, 100 s, gain 1
    header = fits.Header({"EXPTIME": 100.0, "FILTER": band, "PSFFWHM": 0.9, "GAIN": 1.0, "EPOCH": 1, "ZP": zp})
    fits.PrimaryHDU(data, header).writeto(path)
    cat_rng = np.random.default_rng(1)
    catalog = pd.DataFrame({
        "ref_id": np.arange(n), "x": cat_rng.uniform(40, 260, n), "y": cat_rng.uniform(40, 160, n),
        "r50": 0.6, "sersic_n": 1.0, "q": 0.8, "pa": 10.0, "i_auto": cat_rng.uniform(19, 23, n),
    })
    return path, catalog


def resized_set(source, path, size, seed=0):
    """A copy of the set ``source`` with ``size``-pixel stamps: larger ones hold the source's stamps at
    their centre (pixels ``size//2 - 30 : size//2 + 30``) inside random pixels, smaller ones its centre."""
    ts = TrainingSet(source)
    images = ts.images(np.arange(len(ts)))
    off = abs(size // 2 - STAMP // 2)
    if size >= STAMP:
        stamps = np.random.default_rng(seed).normal(50.0, 20.0, (len(ts), 2, size, size)).astype(np.float32)
        stamps[:, :, off : off + STAMP, off : off + STAMP] = images
    else:
        stamps = np.ascontiguousarray(images[:, :, off : off + size, off : off + size])
    (path / "shards").mkdir(parents=True)
    np.save(path / "shards" / "shard-00000.npy", stamps)
    ts.meta.assign(shard=0, row=np.arange(len(ts))).to_parquet(path / "meta.parquet")
    manifest = {**ts.manifest, "stamp_size": size, "shards": [{"file": "shards/shard-00000.npy", "n": len(ts)}]}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path
