"""Injection-recovery: PSF measured on stars, truth bookkeeping, the production measuring path."""

import numpy as np
import pytest
from astropy.io import fits

from lumos_ops.evaluation.injection import InjectionConfig, estimate_psf_fwhm, robust_sigma, run_injection
from lumos_ops.evaluation.injection_report import json_clean, score_injection


def _frame(path, fwhm=3.0, seed=0, shape=(200, 220)):
    rng = np.random.default_rng(seed)
    data = rng.normal(1000.0, 20.0, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    s = fwhm / 2.3548
    for x, y in rng.uniform(15, min(shape) - 15, (6, 2)):
        data += 5e5 * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / s**2) / (2 * np.pi * s * s)
    fits.PrimaryHDU(data.astype(np.float32)).writeto(path)
    return data


def test_psf_fwhm_from_stars(tmp_path):
    data = _frame(tmp_path / "f.fits", fwhm=3.2)
    assert estimate_psf_fwhm(data) == pytest.approx(3.2, rel=0.1)
    med, sig = robust_sigma(data)
    assert med == pytest.approx(1000.0, abs=1.0) and sig == pytest.approx(20.0, rel=0.05)


def test_injection_recovers_bright_fluxes_through_the_production_path(tmp_path):
    _frame(tmp_path / "a.fits", seed=1)
    _frame(tmp_path / "b.fits", seed=2)
    config = InjectionConfig(n_galaxies=8, n_place=3, snr_range=(80.0, 120.0), seed=4)
    table = run_injection([tmp_path / "a.fits", tmp_path / "b.fits"], config, methods=("aperture",))
    assert len(table) == 24 and set(table["method"]) == {"aperture"}
    assert table.groupby("galaxy")["true_flux"].nunique().eq(1).all()
    assert table["placement"].is_unique
    assert np.all((table["true_snr"] > 40) & (table["true_snr"] < 200))
    rel = (table["flux"] - table["true_flux"]) / table["true_flux"]
    assert abs(np.median(rel)) < 0.06
    report = json_clean(score_injection(table))
    entry = report["populations"]["sersic"]["methods"]["aperture"]
    assert entry["by_true_snr"][-1]["n"] == 24
    assert [c["n"] for c in entry["coadds"]] == [2, 5, 10]
    assert entry["coadds"][0]["n_sources"] == 8 and entry["coadds"][1]["n_sources"] == 0


def test_a_crowded_frame_gets_another_jittered_grid_before_it_counts_as_full():
    from lumos_ops.evaluation import injection

    clearance = np.zeros((120, 120))
    clearance[51:61, 51:61] = 10.0  # one small clear patch around a grid point (spacing 44: 12, 56, 100)
    draws = [injection._slots(clearance, 44, 6.0, np.random.default_rng(s)).shape[0] for s in range(40)]
    assert 0 < sum(d > 0 for d in draws) < 40  # one grid often misses the patch
    seed = next(s for s, d in enumerate(draws) if d == 0)
    slots = injection._free_slots(clearance, 44, 6.0, np.random.default_rng(seed))
    assert len(slots) == 1 and (np.abs(slots[0] - 55.5) <= 5.0).all()
    assert len(injection._free_slots(np.zeros((120, 120)), 44, 6.0, np.random.default_rng(0))) == 0
    kept = np.random.default_rng(1)
    assert np.array_equal(injection._free_slots(np.full((120, 120), 10.0), 44, 6.0, kept),
                          injection._slots(np.full((120, 120), 10.0), 44, 6.0, np.random.default_rng(1)))


def test_the_psf_profile_is_kolmogorov_unless_the_measurement_model_is_asked_for(tmp_path):
    from lumos_ops.evaluation import injection
    from lumos_ops.exceptions import LumosValueError
    from lumos_ops.render import DEFAULT_MOFFAT_BETA

    assert InjectionConfig().psf_profile == "kolmogorov"
    kolmogorov, moffat = injection._psf("kolmogorov", 3.0), injection._psf("moffat", 3.0)
    assert type(kolmogorov).__name__ == "Kolmogorov" and kolmogorov.fwhm == pytest.approx(3.0)
    assert type(moffat).__name__ == "Moffat" and moffat.beta == DEFAULT_MOFFAT_BETA
    assert moffat.fwhm == pytest.approx(3.0)
    with pytest.raises(LumosValueError, match="psf_profile"):
        InjectionConfig(psf_profile="airy")
    _frame(tmp_path / "a.fits", seed=1)
    tables = {p: run_injection([tmp_path / "a.fits"], InjectionConfig(n_galaxies=4, n_place=1, snr_range=(80.0, 120.0),
                                                                     seed=4, psf_profile=p), methods=("aperture",))
              for p in ("kolmogorov", "moffat")}
    same = ["x", "y", "galaxy"]
    assert tables["kolmogorov"][same].equals(tables["moffat"][same])  # the same draws, another PSF
    # the same drawn SNR, turned into a flux with the profile's Cramer-Rao error
    assert np.allclose(tables["kolmogorov"]["true_snr"], tables["moffat"]["true_snr"], rtol=0.05)
    assert np.allclose(tables["kolmogorov"]["true_flux"], tables["moffat"]["true_flux"], rtol=0.05)
    assert not tables["kolmogorov"]["flux"].equals(tables["moffat"]["flux"])
