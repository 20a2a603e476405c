"""Accuracy of render_galaxies / render_point_sources against GalSim (test-only dependency)."""

from __future__ import annotations

import numpy as np
import pytest

from lumos_ops.render import render_point_sources
from lumos_ops.render.benchmark import galsim_profile_set, random_profiles, render_profile_set, run_render_benchmark
from lumos_ops.render.galsim_reference import galsim_offset, import_galsim

galsim = pytest.importorskip("galsim")


def test_a_few_profiles_match_galsim_closely() -> None:
    params = random_profiles(12, seed=11, n_max=2.0)
    errors = np.abs(render_profile_set(params) - galsim_profile_set(params)).sum(axis=(1, 2)) / params["flux"]
    assert np.median(errors) < 1e-3
    assert errors.max() < 3e-3


@pytest.mark.slow
def test_two_hundred_random_profiles_match_galsim() -> None:
    params = random_profiles(200, seed=2026, distinct_n=60)  # GalSim builds its tables once per index
    assert np.unique(params["sersic_n"]).size > 40 and params["sersic_n"].max() > 6.0 > 0.45 > params["sersic_n"].min()
    assert set(params["psf"]) == {"moffat", "gaussian"}
    errors = np.abs(render_profile_set(params) - galsim_profile_set(params)).sum(axis=(1, 2)) / params["flux"]
    assert np.median(errors) <= 0.01
    assert errors.max() <= 0.03


@pytest.mark.parametrize("psf", ["moffat", "gaussian"])
def test_point_sources_match_galsim(psf: str) -> None:
    size, fwhm, beta, dx, dy = 25, 0.7, 2.2, 0.37, -0.12
    ours = render_point_sources(psf_fwhm=fwhm, psf_beta=beta, psf=psf, dx=dx, dy=dy, flux=2.0, size=size)
    kind = galsim.Gaussian(fwhm=fwhm) if psf == "gaussian" else galsim.Moffat(beta=beta, fwhm=fwhm)
    reference = kind.withFlux(2.0).drawImage(nx=size, ny=size, scale=0.263, offset=galsim_offset(size, dx, dy)).array
    assert np.abs(ours.images[0] - reference).sum() / 2.0 < 1e-3


def test_import_galsim_returns_the_module() -> None:
    assert import_galsim() is galsim


def test_galsim_offset_centre_convention() -> None:
    assert galsim_offset(60, 0.0, 0.0) == (0.5, 0.5)
    assert galsim_offset(61, 0.25, -0.5) == (0.25, -0.5)


def test_run_render_benchmark_reports_measured_numbers() -> None:
    report = run_render_benchmark(3, seed=5, kind="catalogue", size=32)
    assert report["n_profiles"] == 3 and report["ours_seconds"] > 0 and report["galsim_seconds"] > 0
    assert report["speedup"] == pytest.approx(report["galsim_seconds"] / report["ours_seconds"])
    assert 0 <= report["l1_median"] <= report["l1_max"] < 0.01


def test_missing_galsim_gives_an_actionable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from lumos_ops.exceptions import LumosError
    from lumos_ops.render.galsim_reference import GalSimMissingError

    real_import = importlib.import_module

    def no_galsim(name: str, *args: object) -> object:
        if name == "galsim":
            raise ImportError("No module named 'galsim'")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_galsim)
    with pytest.raises(GalSimMissingError, match="pip install") as info:
        run_render_benchmark(2, seed=0)
    assert isinstance(info.value, LumosError) and isinstance(info.value, ImportError)
