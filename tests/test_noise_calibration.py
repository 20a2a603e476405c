"""lumos_ops.noise_calibration: blank-sky error scales on white and correlated noise, and
the LUMOS likelihood widening."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from lumos_ops import noise_calibration as nc
from lumos_ops.bench.synthetic import SyntheticExposure, random_catalog, synthetic_exposure
from lumos_ops.io.exposure import Exposure, read_exposure
from lumos_ops.lumos.mixture import summarize
from lumos_ops.measure import get_method, measure_exposure, prepare_targets
from lumos_ops.stats import sigma68

SHAPE = (560, 560)
SKY = 6.0
EXPTIME = 90.0
GAIN = 2.0
SPACING = 40


def _grid_catalog(seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Compact galaxies on a jittered 40 px grid (free sky between them) with true SNR ~ 3-30."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(50, SHAPE[1] - 50, SPACING), np.arange(50, SHAPE[0] - 50, SPACING))
    n = gx.size
    catalog = random_catalog(n, shape=SHAPE, seed=seed)
    catalog["x"] = gx.ravel() + rng.uniform(-3, 3, n)
    catalog["y"] = gy.ravel() + rng.uniform(-3, 3, n)
    catalog["r50"] = rng.uniform(0.2, 0.6, n)
    catalog["sersic_n"] = rng.uniform(0.5, 2.5, n)
    flux = np.exp(rng.uniform(np.log(3.0), np.log(40.0), n))
    return catalog, flux


def _correlated_exposure(catalog: pd.DataFrame, flux: np.ndarray, *, smooth: float, seed: int) -> SyntheticExposure:
    """Sources with their own (white) Poisson noise on a sky whose Gaussian noise is white (``smooth = 0``)
    or white noise smoothed by a Gaussian kernel of ``smooth`` px and rescaled to the same pixel
    variance: the pixel variance the methods see is the same, the noise of a flux sum is larger."""
    noiseless = synthetic_exposure(catalog, flux, shape=SHAPE, sky=0.0, exptime=1e9, gain=1.0, seed=seed)
    rng = np.random.default_rng(seed + 100)
    light = np.asarray(noiseless.adu, dtype=np.float64) / 1e9  # e-/s (counts / exptime)
    source = rng.poisson(np.clip(light, 0, None) * EXPTIME) / EXPTIME
    noise = rng.normal(0.0, 1.0, SHAPE)
    if smooth > 0:
        noise = ndimage.gaussian_filter(noise, smooth, mode="wrap")
        noise /= noise.std()
    image = SKY + source + noise * np.sqrt(SKY / EXPTIME)
    header = {"EXPTIME": EXPTIME, "FILTER": "NB685", "PSFFWHM": 0.9, "GAIN": GAIN}
    return SyntheticExposure(adu=(image * EXPTIME / GAIN).astype(np.float32), header=header, flux=flux)


def _read(exposure: SyntheticExposure, path: Path) -> Exposure:
    return read_exposure(exposure.write(path))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Exposure, pd.DataFrame, np.ndarray]]:
    out = {}
    folder = tmp_path_factory.mktemp("noisecal")
    for name, smooth in (("white", 0.0), ("correlated", 1.0)):
        catalog, flux = _grid_catalog(seed=3)
        out[name] = (_read(_correlated_exposure(catalog, flux, smooth=smooth, seed=5), folder / f"{name}.fits"), catalog, flux)
    return out


def _pull_sigma68(table: pd.DataFrame, flux: np.ndarray, method: str) -> float:
    rows = table[table["method"] == method]
    return float(sigma68((rows["flux"].to_numpy() - flux) / rows["flux_err"].to_numpy()))


def test_blank_positions_avoid_targets_sources_and_edges(scenes) -> None:
    exposure, catalog, _ = scenes["white"]
    x, y = catalog["x"].to_numpy(), catalog["y"].to_numpy()
    bx, by = nc.blank_sky_positions(exposure, x, y, catalog["r50"].to_numpy(), n_positions=150, seed=1)
    assert 30 <= bx.size <= 150
    again = nc.blank_sky_positions(exposure, x, y, catalog["r50"].to_numpy(), n_positions=150, seed=1)
    np.testing.assert_array_equal(bx, again[0])  # seeded: reproducible
    dist = np.hypot(bx[:, None] - x[None, :], by[:, None] - y[None, :]).min(axis=1)
    assert dist.min() > 8.0
    assert bx.min() >= 29 and by.min() >= 29 and bx.max() <= SHAPE[1] - 30 and by.max() <= SHAPE[0] - 30
    # the galaxies themselves are detected: no blank pixel on a detected source
    mask = nc.detect_sources(exposure.data, fwhm_px=0.9 / 0.263)
    assert not mask[np.rint(by).astype(int), np.rint(bx).astype(int)].any()


def test_detect_sources_does_not_mask_pure_noise() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(10.0, 1.0, (300, 300))
    assert nc.detect_sources(noise, fwhm_px=3.0).mean() < 0.01
    # a 3-sigma single-pixel rule masks much of the same pure noise
    grown = ndimage.distance_transform_edt(~nc.source_mask(noise)) < 10
    assert grown.mean() > 0.3


def test_placement_rule_does_not_choose_positions_by_their_noise() -> None:
    """Correlated pure noise (a resampled frame): nearly every position is placeable, and the
    placeable ones hold the frame's mean sky, where a single-pixel 3-sigma rule keeps quiet places."""
    rng = np.random.default_rng(1)
    noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (400, 400)), 1.0)
    noise /= noise.std()
    inner = np.zeros(noise.shape, dtype=bool)
    inner[20:-20, 20:-20] = True
    box = ndimage.uniform_filter(noise, 9)  # the mean sky of a 9 x 9 px footprint at each position
    scale = box[inner].std()

    def offset(placeable: np.ndarray) -> float:
        return float((box[placeable & inner].mean() - box[inner].mean()) / scale)

    clear = nc.source_clearance(noise, fwhm_px=3.0) >= 10.0
    assert clear.mean() > 0.97
    assert abs(offset(clear)) < 0.01
    quiet = ndimage.distance_transform_edt(~nc.source_mask(noise)) >= 10.0
    assert quiet.mean() < 0.8 and offset(quiet) < -0.04


def test_placement_rule_avoids_a_source_fainter_than_three_sigma_per_pixel() -> None:
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:200, :200]
    blob = 2.0 * np.exp(-((xx - 100.0) ** 2 + (yy - 100.0) ** 2) / (2 * 2.5**2))  # peak 2 sigma
    image = rng.normal(0.0, 1.0, (200, 200)) + blob
    dist = nc.source_clearance(image, fwhm_px=3.0)
    assert dist[100, 100] == 0.0 and dist[95:106, 95:106].max() < 10.0


def test_placement_rule_avoids_what_the_measurement_detects_under_an_undersampled_psf() -> None:
    """A PSF of 0.65 px FWHM: its matched filter barely smooths and misses a faint extended source
    (peak 1 sigma per pixel, 3 px Gaussian) that the measurement's own detection finds; no
    injected galaxy may be put on it, or the measurement reads its light as the galaxy's."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:200, :200]
    blob = np.exp(-((xx - 100.0) ** 2 + (yy - 100.0) ** 2) / (2 * 3.0**2))
    image = rng.normal(0.0, 1.0, (200, 200)) + blob
    psf_matched = ndimage.distance_transform_edt(~nc.detect_sources(image, fwhm_px=0.65))
    assert psf_matched[100, 100] >= 10.0  # the case in point: the PSF-matched filter alone misses it
    dist = nc.source_clearance(image, fwhm_px=0.65)
    assert dist[100, 100] == 0.0 and dist[95:106, 95:106].max() < 10.0
    assert (dist >= 10.0).mean() > 0.9  # the rest of the frame stays placeable


def test_white_noise_scale_is_one(scenes) -> None:
    exposure, catalog, _ = scenes["white"]
    methods = {m: get_method(m) for m in ("aperture", "optimal")}
    cal = nc.calibrate_noise(exposure, catalog, catalog["x"].to_numpy(), catalog["y"].to_numpy(), methods, n_positions=200)
    for name, c in cal.items():
        assert c.reliable and c.n_positions >= 100, name
        k = c.k(np.array(c.area_range))
        # the aperture error counts partial pixels at weight w, their noise at w^2: slightly high (k ~ 0.9)
        assert np.all((k > 0.8) & (k < 1.15)), (name, c)
        assert abs(c.median_pull) < 0.3


def test_correlated_noise_scale_and_calibrated_pulls(scenes) -> None:
    exposure, catalog, flux = scenes["correlated"]
    # the synthetic galaxies are exactly their catalogue model: no error floor, the calibration alone
    raw = measure_exposure(exposure, catalog, methods=("aperture", "optimal"), calibrate_errors=False, error_floor=0.0)
    table = measure_exposure(exposure, catalog, methods=("aperture", "optimal"), error_floor=0.0)
    for method in ("aperture", "optimal"):
        before, after = _pull_sigma68(raw, flux, method), _pull_sigma68(table, flux, method)
        rows = table[table["method"] == method]
        assert before > 1.4, (method, before)
        assert rows["error_scale"].min() > 1.3
        np.testing.assert_allclose(rows["flux"], raw[raw["method"] == method]["flux"])  # fluxes untouched
        np.testing.assert_allclose(rows["flux_err_raw"], raw[raw["method"] == method]["flux_err"])
        assert 0.85 < after < 1.15, (method, before, after)


def test_background_only_scaling_spares_bright_sources(scenes) -> None:
    exposure, catalog, _ = scenes["white"]
    ctx = prepare_targets(exposure, catalog.iloc[:6])
    frame = get_method("optimal").measure(ctx)
    bright = frame.assign(flux=frame["flux"] * 0 + 1e5)
    faint = frame.assign(flux=frame["flux"] * 0)
    k = 2.0
    assert np.allclose(nc.apply_error_scale(faint, "optimal", k, ctx)["flux_err"], k * frame["flux_err"], rtol=1e-6)
    widened = nc.apply_error_scale(bright, "optimal", k, ctx)["flux_err"].to_numpy()
    assert np.all(widened < 1.2 * frame["flux_err"].to_numpy())  # Poisson-dominated: barely widened
    ap = get_method("aperture").measure(ctx)
    out = nc.apply_error_scale(ap.assign(flux=0.0), "aperture", k, ctx)
    np.testing.assert_allclose(out["flux_err"], k * ap["flux_err"], rtol=1e-6)
    assert (out["error_scale"] == k).all() and np.allclose(out["flux_err_raw"], ap["flux_err"])


def test_widen_mixture_keeps_median_and_scales_widths() -> None:
    rng = np.random.default_rng(2)
    n, kcomp = 50, 5
    alpha = rng.dirichlet(np.ones(kcomp), n)
    mu = rng.normal(20.0, 8.0, (n, kcomp))
    sigma = rng.uniform(1.0, 6.0, (n, kcomp))
    before = summarize(alpha, mu, sigma)
    factor = rng.uniform(0.5, 2.5, n)
    a2, m2, s2 = nc.widen_mixture(alpha, mu, sigma, before["median"], factor)
    after = summarize(a2, m2, s2)
    np.testing.assert_allclose(after["median"], before["median"], atol=1e-6)
    np.testing.assert_allclose(after["sigma68"], factor * before["sigma68"], rtol=1e-6)
    np.testing.assert_allclose(after["sigma95"], factor * before["sigma95"], rtol=1e-6)
    np.testing.assert_allclose(after["eta"], before["eta"], atol=1e-6)


def test_lumos_columns_stay_consistent_after_widening(scenes) -> None:
    from lumos_ops.lumos.inference import Mixtures, mixture_table

    exposure, catalog, _ = scenes["white"]
    ctx = prepare_targets(exposure, catalog.iloc[:8])
    rng = np.random.default_rng(4)
    n = ctx.n
    alpha = rng.dirichlet(np.ones(5), n)
    mu = rng.normal(0.0, 3.0, (n, 5))
    sigma = rng.uniform(1.0, 4.0, (n, 5))
    frame = pd.DataFrame(mixture_table(Mixtures(alpha=alpha, mu=mu, sigma=sigma, truncated=np.zeros(n, bool))))
    out = nc.apply_error_scale(frame, "lumos", 1.7, ctx)
    a = out[[f"alpha_{i}" for i in range(5)]].to_numpy()
    m = out[[f"mu_{i}" for i in range(5)]].to_numpy()
    s = out[[f"sigma_{i}" for i in range(5)]].to_numpy()
    stats = summarize(a, m, s)
    np.testing.assert_allclose(out["flux"], frame["flux"])
    for name in ("median", "sigma68", "sigma95", "mean", "std", "mode"):
        np.testing.assert_allclose(out[name], stats[name], rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(out["flux_err"], out["sigma68"])
    factor = (out["flux_err"] / out["flux_err_raw"]).to_numpy()
    assert np.all(factor > 1.0) and np.all(factor <= 1.7 + 1e-9)
    # near-zero fluxes: the background-dominated regime, the full k
    assert np.median(factor) > 1.6


def test_too_few_positions_gives_identity_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 70 x 70 px frame has no room for 30 positions, even 2 px apart."""
    catalog = random_catalog(3, shape=(70, 70), margin=30, seed=1)
    exposure = _read(synthetic_exposure(catalog, np.full(3, 50.0), shape=(70, 70), seed=1), tmp_path / "small.fits")
    with caplog.at_level("WARNING"):
        # the three targets share this tiny frame: no joint fit, whose variance factor would widen them
        table = measure_exposure(exposure, catalog, methods=("aperture",), neighbours=False)
    assert (table["error_scale"] == 1.0).all()
    np.testing.assert_allclose(table["flux_err_stat"], table["flux_err_raw"])  # only the survey's error floor added
    assert "blank-sky positions" in caplog.text


def test_crowded_small_frame_is_calibrated_on_closer_positions(tmp_path: Path) -> None:
    """A 150 x 150 px frame of correlated noise with a target every 24 px: positions a clearance
    apart are too few for a calibration; closer ones (same clearance from every source) give one."""
    shape, spacing = (150, 150), 24
    rng = np.random.default_rng(4)
    gx, gy = np.meshgrid(np.arange(20, shape[1] - 19, spacing), np.arange(20, shape[0] - 19, spacing))
    n = gx.size
    catalog = random_catalog(n, shape=shape, seed=4)
    catalog["x"] = gx.ravel() + rng.uniform(-2, 2, n)
    catalog["y"] = gy.ravel() + rng.uniform(-2, 2, n)
    catalog["r50"] = rng.uniform(0.2, 0.5, n)
    catalog["sersic_n"] = rng.uniform(0.5, 2.5, n)
    flux = np.exp(rng.uniform(np.log(3.0), np.log(40.0), n))
    noiseless = synthetic_exposure(catalog, flux, shape=shape, sky=0.0, exptime=1e9, gain=1.0, seed=5)
    light = np.asarray(noiseless.adu, dtype=np.float64) / 1e9
    noise = ndimage.gaussian_filter(np.random.default_rng(105).normal(0.0, 1.0, shape), 1.0, mode="wrap")
    image = SKY + np.random.default_rng(106).poisson(np.clip(light, 0, None) * EXPTIME) / EXPTIME
    image += noise / noise.std() * np.sqrt(SKY / EXPTIME)
    header = {"EXPTIME": EXPTIME, "FILTER": "NB685", "PSFFWHM": 0.9, "GAIN": GAIN}
    exposure = _read(SyntheticExposure(adu=(image * EXPTIME / GAIN).astype(np.float32), header=header, flux=flux),
                     tmp_path / "crowded.fits")
    x, y, r50 = catalog["x"].to_numpy(), catalog["y"].to_numpy(), catalog["r50"].to_numpy()
    methods = {m: get_method(m) for m in ("aperture", "optimal")}
    cal = nc.calibrate_noise(exposure, catalog, x, y, methods)
    clearance = max(float(nc._reach_px(np.array([np.median(r50)]), 0.9 / 0.263, 0.263)[0]), 5.0)
    apart = nc.blank_sky_positions(exposure, x, y, r50, n_positions=1000, clearance=clearance,
                                   mask=nc._frame_detections(exposure))[0]
    assert apart.size < nc.MIN_POSITIONS  # a clearance apart: too few
    for name, c in cal.items():
        assert c.reliable and c.n_positions >= nc.MIN_POSITIONS and c.separation < clearance, (name, c)
    raw = measure_exposure(exposure, catalog, methods=tuple(methods), calibrate_errors=False, error_floor=0.0)
    table = measure_exposure(exposure, catalog, methods=tuple(methods), error_floor=0.0)
    for method in methods:
        before, after = _pull_sigma68(raw, flux, method), _pull_sigma68(table, flux, method)
        assert before > 2.5 and 0.7 < after < 1.5, (method, before, after)


def test_fit_error_scale_recovers_a_size_law() -> None:
    rng = np.random.default_rng(7)
    area = np.exp(rng.uniform(np.log(20), np.log(300), 400))
    pull = rng.normal(0.0, 1.3 * (area / 80.0) ** 0.4)
    cal = nc.fit_error_scale("optimal", pull, area)
    assert abs(cal.slope - 0.4) < 0.15
    assert abs(cal.k(80.0) - 1.3) < 0.15
    flat = nc.fit_error_scale("optimal", rng.normal(0, 1.0, 400), area)
    assert abs(flat.slope) < 0.15 and abs(flat.scale - 1.0) < 0.12
    few = nc.fit_error_scale("optimal", rng.normal(0, 2.0, 20), area[:20])
    assert not few.reliable and few.k(50.0) == 1.0


class _NarrowWithSource:
    """A likelihood method that reads its stamps, as LUMOS does: the matched-filter flux of the stamp
    (background and pixel noise from its outer ring) as one Gaussian, right on empty sky and
    ``narrow`` times its error wide above 3 sigma."""

    name = "lumos"

    def __init__(self, narrow: float) -> None:
        self._narrow = narrow

    def measure(self, ctx):
        from lumos_ops.lumos.inference import Mixtures, mixture_table

        data = ctx.stamps.data.astype(np.float64)
        model = ctx.models.astype(np.float64)
        size = data.shape[-1]
        yy, xx = np.mgrid[:size, :size] - size // 2
        ring = np.hypot(xx, yy) > 20
        outer = data[:, ring]
        background = np.nanmedian(outer, axis=1)
        noise = 1.4826 * np.nanmedian(np.abs(outer - background[:, None]), axis=1)
        norm = np.sum(model**2, axis=(1, 2))
        flux = np.nansum(model * (data - background[:, None, None]), axis=(1, 2)) / norm
        poisson = np.maximum(flux, 0.0) * np.sum(model**3, axis=(1, 2)) / (ctx.exposure.exptime * norm**2)
        err = np.sqrt(noise**2 / norm + poisson)
        width = np.where(flux > 3.0 * err, err * self._narrow, err) / 0.9945  # sigma68 of one Gaussian
        n = flux.size
        mix = Mixtures(alpha=np.ones((n, 1)), mu=flux[:, None], sigma=width[:, None], truncated=np.zeros(n, bool))
        out = pd.DataFrame(mixture_table(mix))
        out["flag"] = 0
        return out


def test_source_scale_factor_per_band_and_ramp_from_zero_flux() -> None:
    low = nc.SourceBand((1.0, 5.0), 1.2, 0.05, 70, 0.0, True)
    high = nc.SourceBand((5.0, 100.0), 1.5, 0.05, 130, 0.0, True)
    check = nc.SourceScale((low, high))
    np.testing.assert_allclose(check.factor(np.array([np.nan, -3.0, 0.0, 0.5, 1.0, 4.9, 5.0, 80.0, 500.0])),
                               [1.0, 1.0, 1.0, 1.1, 1.2, 1.2, 1.5, 1.5, 1.5])
    noisy = nc.SourceBand((1.0, 5.0), 1.2, 0.3, 70, 0.0, False)  # within 2 standard errors of 1: factor 1
    np.testing.assert_allclose(nc.SourceScale((noisy, high)).factor(np.array([0.5, 3.0, 20.0])), [1.0, 1.0, 1.5])
    assert not nc.SourceScale((noisy,)).reliable and check.reliable


@pytest.mark.parametrize("narrow", [0.5, 1.0, 2.0])
def test_source_present_check_widens_a_likelihood_too_narrow_with_a_source(scenes, narrow: float) -> None:
    exposure, catalog, flux = scenes["white"]
    method = _NarrowWithSource(narrow)
    x, y = catalog["x"].to_numpy(), catalog["y"].to_numpy()
    cal = nc.calibrate_noise(exposure, catalog, x, y, {"lumos": method}, n_positions=200)["lumos"]
    assert cal.reliable and cal.source is not None
    assert 0.85 < cal.k(cal.area_ref) < 1.15  # empty sky: the width is right
    low, high = cal.source.bands
    assert low.snr_range == (1.0, 5.0) and high.snr_range == (5.0, 100.0)
    assert low.n_positions >= 40 and high.n_positions >= 80
    if narrow < 1.0:
        # narrow above 3 sigma: all of the high band, part of the low one
        assert high.reliable and 1.6 < high.scale < 2.4, cal.source
        assert low.scale < high.scale
    elif narrow > 1.0:
        # too wide with a source: measured, but the check never narrows
        assert high.scale < 0.7 and not high.reliable and not cal.source.reliable, cal.source
    else:
        assert abs(high.scale - 1.0) < 0.2 and abs(low.scale - 1.0) < 0.2, cal.source
    skipped = nc.calibrate_noise(exposure, catalog, x, y, {"lumos": method}, n_positions=200, source_check=False)
    assert skipped["lumos"].source is None

    table = measure_exposure(exposure, catalog, methods=("lumos",), instances={"lumos": method})
    bright = flux > 10.0  # e-/s: true SNR above about 8 on this sky
    pulls = (table["flux"].to_numpy() - flux) / table["flux_err"].to_numpy()
    raw = (table["flux"].to_numpy() - flux) / table["flux_err_raw"].to_numpy()
    assert bright.sum() >= 40
    assert table["source_scale"].notna().all()  # every LUMOS row says what the check did, 1 included
    if narrow < 1.0:
        assert sigma68(raw[bright]) > 1.6
        assert 0.8 < sigma68(pulls[bright]) < 1.25
        # the high band's factor from SNR 5 up (this run's own check: the same positions, so the same scale)
        assert table["source_scale"][bright].median() == pytest.approx(high.scale, rel=1e-3)
        assert table["source_scale"].max() <= high.scale * (1 + 1e-3)
    else:
        np.testing.assert_allclose(table["flux_err"] / table["flux_err_raw"], table["error_scale"], rtol=0.2)
    if narrow > 1.0:
        assert (table["source_scale"] == 1.0).all()
