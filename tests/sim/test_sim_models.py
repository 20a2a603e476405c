"""Photometric model (filters, zero points, SEDs) and the galaxy population statistics."""

from __future__ import annotations

import numpy as np
import pytest

from lumos_ops.constants import NB_BANDS
from lumos_ops.exceptions import LumosValueError
from lumos_ops.sim.bands import band_sky_rate, band_zero_point, nb_throughput
from lumos_ops.sim.population import draw_galaxies, draw_magnitudes, njy_columns
from lumos_ops.sim.seds import galaxy_band_fluxes, mag_to_njy, njy_to_mag


def test_flat_spectrum_calibration_matches_guide() -> None:
    # A flat-spectrum i_AB = 21.7 galaxy gives 4.9 e-/s in NB685 inside the PAUS aperture.
    flux = mag_to_njy(21.7) * 10 ** (0.4 * (band_zero_point("NB685") - 31.4))
    assert flux * 0.625 == pytest.approx(4.9, rel=1e-9)
    zps = np.array([band_zero_point(b) for b in NB_BANDS])
    assert zps.max() - zps.min() < 0.6 and np.argmax(zps) in range(15, 25)
    assert 5.0 < band_sky_rate("NB685") < 7.0 < band_sky_rate("NB845")
    assert njy_to_mag(mag_to_njy(22.3)) == pytest.approx(22.3)


def test_narrow_band_shape() -> None:
    lam = np.array([685.0, 685.0 + 6.5, 685.0 + 15.0])
    t = nb_throughput("NB685", lam)
    assert t[0] == pytest.approx(1.0) and t[1] == pytest.approx(0.5) and t[2] < 0.01


def test_template_colours_and_redshift() -> None:
    centres = np.array([float(b[2:]) for b in NB_BANDS])
    # The 400 nm break of an elliptical moves to 400 (1 + z) nm.
    for z in (0.3, 0.6):
        f = galaxy_band_fluxes(i_auto=[21.0], z=[z], sed_type=[0.0], ebv=[0.0])[0]
        blue = f[centres < 390 * (1 + z)].mean()
        red = f[(centres > 410 * (1 + z)) & (centres < 410 * (1 + z) + 60)].mean()
        assert red > 1.8 * blue
    # Irregulars are bluer than ellipticals; dust reddens.
    flux = galaxy_band_fluxes(i_auto=[21.0] * 3, z=[0.4] * 3, sed_type=[0.0, 3.0, 3.0], ebv=[0.0, 0.0, 0.4])
    ratio = flux[:, 0] / flux[:, -1]
    assert ratio[1] > ratio[0] and ratio[2] < ratio[1]
    # A template mixture lies between its two templates; the i-band normalisation scales fluxes.
    mix = galaxy_band_fluxes(i_auto=[21.0], z=[0.4], sed_type=[0.5], ebv=[0.0])[0]
    pure = galaxy_band_fluxes(i_auto=[21.0, 21.0], z=[0.4, 0.4], sed_type=[0.0, 1.0], ebv=[0.0, 0.0])
    np.testing.assert_allclose(mix, pure.mean(axis=0), rtol=1e-9)
    brighter = galaxy_band_fluxes(i_auto=[20.0], z=[0.4], sed_type=[0.5], ebv=[0.0])[0]
    np.testing.assert_allclose(brighter / mix, 10**0.4, rtol=1e-9)
    with pytest.raises(LumosValueError, match="z must"):
        galaxy_band_fluxes(i_auto=[21.0], z=[2.5], sed_type=[0.0], ebv=[0.0])


def test_population_matches_cosmos_statistics() -> None:
    galaxies = draw_galaxies(np.random.default_rng(0), 6000)
    assert 0.5 < galaxies.r50.median() < 0.65
    assert galaxies.r50.between(0.14, 2.2).all()
    assert 0.95 < galaxies.sersic_n.median() < 1.25
    assert galaxies.sersic_n.between(0.3, 6.5).all()
    assert galaxies.i_auto.between(17.5, 23.0).all()
    assert np.histogram(galaxies.i_auto, bins=[17.5, 19, 20.5, 22, 23])[0].tolist() == sorted(
        np.histogram(galaxies.i_auto, bins=[17.5, 19, 20.5, 22, 23])[0].tolist()
    )
    assert galaxies.zspec.max() <= 1.5 and 0.5 < galaxies.zspec.median() < 0.8
    # Brighter galaxies are larger and at lower redshift; higher-n galaxies are larger.
    assert np.corrcoef(galaxies.i_auto, np.log(galaxies.r50))[0, 1] < -0.2
    assert np.corrcoef(galaxies.i_auto, galaxies.zspec)[0, 1] > 0.2
    assert np.corrcoef(np.log(galaxies.sersic_n), np.log(galaxies.r50))[0, 1] > 0.05
    assert list(galaxies.columns[-40:]) == njy_columns()
    # The i-band magnitude is consistent with the band fluxes near 770 nm.
    i_like = -2.5 * np.log10(galaxies[["flux_nJy_NB765", "flux_nJy_NB775"]].mean(axis=1)) + 31.4
    assert np.median(np.abs(i_like - galaxies.i_auto)) < 0.15


def test_magnitude_sampler() -> None:
    mags = draw_magnitudes(np.random.default_rng(1), 20000, low=20.0, high=22.0, slope=0.3)
    counts = np.histogram(mags, bins=[20, 21, 22])[0]
    assert counts[1] / counts[0] == pytest.approx(10**0.3, rel=0.06)
    with pytest.raises(LumosValueError):
        draw_magnitudes(np.random.default_rng(1), 3, low=22.0, high=20.0)


def test_colours_carry_the_redshift() -> None:
    """A template fit to noiseless 40-band fluxes recovers zspec (photo-z needs consistent colours)."""
    galaxies = draw_galaxies(np.random.default_rng(5), 150)
    observed = galaxies[njy_columns()].to_numpy()
    z, t, e = np.meshgrid(np.arange(0.02, 1.51, 0.01), np.linspace(0, 3, 7), [0.0, 0.1, 0.2, 0.3, 0.4], indexing="ij")
    models = galaxy_band_fluxes(i_auto=np.full(z.size, 20.0), z=z.ravel(), sed_type=t.ravel(), ebv=e.ravel())
    weight = 1.0 / (0.03 * observed) ** 2
    mm = weight @ (models**2).T
    amplitude = (observed * weight) @ models.T / mm
    chi2 = (observed**2 * weight).sum(axis=1)[:, None] - amplitude**2 * mm
    z_best = z.ravel()[np.argmin(chi2, axis=1)]
    dz = np.abs(z_best - galaxies.zspec) / (1 + galaxies.zspec)
    assert (dz < 0.03).mean() > 0.9
