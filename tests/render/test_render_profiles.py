"""Tests for the Sérsic and PSF Fourier transforms and their tables (lumos_ops.render.sersic, .psf)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import scipy.special

from lumos_ops.render.psf import PsfKind, moffat_fourier, moffat_table, psf_log_surface_brightness, psf_scale_radius
from lumos_ops.render.sersic import sersic_b, sersic_fourier, sersic_log_surface_brightness, sersic_table
from lumos_ops.render.tables import ln_k_grid


@pytest.mark.parametrize("n", [0.3, 0.5, 1.0, 2.7, 4.0, 6.5])
def test_sersic_b_makes_r50_the_true_half_light_radius(n: float) -> None:
    b = sersic_b(n)
    assert scipy.special.gammainc(2 * n, b) == pytest.approx(0.5, abs=1e-12)
    if n >= 1.0:
        assert b == pytest.approx(2 * n - 1 / 3, rel=0.01)


@pytest.mark.parametrize("n", [0.3, 1.0, 4.0, 6.5])
def test_sersic_surface_brightness_has_unit_flux_and_half_inside_r50(n: float) -> None:
    def ring(r: float) -> float:
        return 2 * np.pi * r * np.exp(sersic_log_surface_brightness(r, n))

    inner = scipy.integrate.quad(ring, 0, 1, limit=200)[0]
    outer = scipy.integrate.quad(ring, 1, np.inf, limit=400)[0]
    assert inner + outer == pytest.approx(1.0, rel=1e-6)
    assert inner == pytest.approx(0.5, rel=1e-6)


def test_sersic_fourier_matches_closed_forms() -> None:
    ln_k, f = sersic_fourier(0.5)
    k = np.exp(ln_k)
    keep = (k > 1e-4) & (k < 1e4)
    sigma = 1 / np.sqrt(2 * np.log(2.0))  # n = 0.5 is a Gaussian, b = ln 2
    np.testing.assert_allclose(f[keep], np.exp(-0.5 * (k[keep] * sigma) ** 2), atol=1e-10)
    ln_k, f = sersic_fourier(1.0)
    k = np.exp(ln_k)
    keep = (k > 1e-4) & (k < 1e4)
    scale = 1 / sersic_b(1.0)  # exponential disc
    np.testing.assert_allclose(f[keep], (1 + (k[keep] * scale) ** 2) ** -1.5, atol=1e-10)


@pytest.mark.parametrize("n", [4.0, 6.5])
def test_sersic_fourier_matches_direct_hankel_integral_for_high_n(n: float) -> None:
    ln_k, f = sersic_fourier(n)
    for kr in (0.3, 2.0):
        def integrand(r: float, kr: float = kr) -> float:
            return 2 * np.pi * r * np.exp(sersic_log_surface_brightness(r, n)) * scipy.special.j0(kr * r)

        pieces = np.concatenate([[0.0], np.logspace(-6, 4, 200)])
        direct = sum(scipy.integrate.quad(integrand, a, b, limit=200)[0] for a, b in zip(pieces[:-1], pieces[1:]))
        assert np.interp(np.log(kr), ln_k, f) == pytest.approx(direct, abs=1e-5)


def test_sersic_table_rows_interpolate_in_n() -> None:
    table = sersic_table()
    columns = ln_k_grid()
    ns = np.array([0.3, 0.417, 1.333, 3.951, 6.2, 6.5])
    rows = table.rows(ns)
    for n, row in zip(ns, rows):
        ln_k, f = sersic_fourier(float(n))
        np.testing.assert_allclose(row[1:], np.interp(columns[1:], ln_k, f), atol=1e-6)
    assert np.all(rows[:, 0] == 1.0)


def test_moffat_fourier_matches_direct_hankel_integral() -> None:
    beta, a = 2.5, 1.0
    for s in (0.1, 1.0, 3.0):
        def integrand(r: float, s: float = s) -> float:
            return 2 * np.pi * r * np.exp(psf_log_surface_brightness(PsfKind.MOFFAT, r, a, beta)) * scipy.special.j0(s * r)

        pieces = np.concatenate([[0.0], np.logspace(-3, 5, 300)])
        direct = sum(scipy.integrate.quad(integrand, lo, hi, limit=200)[0] for lo, hi in zip(pieces[:-1], pieces[1:]))
        assert moffat_fourier(np.array(s), beta) == pytest.approx(direct, abs=1e-6)
    assert moffat_fourier(np.array(0.0), beta) == 1.0


def test_moffat_table_rows_interpolate_in_beta() -> None:
    betas = np.array([1.5, 2.013, 3.5, 4.999, 10.0])
    rows = moffat_table().rows(betas)
    s = np.exp(ln_k_grid()[1:])
    for beta, row in zip(betas, rows):
        np.testing.assert_allclose(row[1:], moffat_fourier(s, float(beta)), atol=1e-6)


@pytest.mark.parametrize("kind", list(PsfKind))
def test_psf_scale_radius_gives_the_fwhm(kind: PsfKind) -> None:
    fwhm, beta = 1.7, 3.2
    scale = psf_scale_radius(kind, np.array(fwhm), np.array(beta))
    centre = psf_log_surface_brightness(kind, 0.0, scale, beta)
    half = psf_log_surface_brightness(kind, fwhm / 2, scale, beta)
    assert half - centre == pytest.approx(np.log(0.5), abs=1e-12)
