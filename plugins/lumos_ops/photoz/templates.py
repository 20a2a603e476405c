"""Template grid of the photo-z fit: narrow-band fluxes of (type x E(B-V) x z) per nJy of i band.

The grid reuses the survey simulator's SED machinery (:func:`lumos_ops.sim.seds.galaxy_band_fluxes`:
redshifted CWW templates with Calzetti reddening averaged over the NB throughputs), so a fit to the
simulator's noiseless fluxes is exact up to the grid spacing. Each model is normalised to 1 nJy in
the i band, so the fitted amplitude is the source's i-band flux density (nJy).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

from lumos_ops.constants import NB_BANDS, NJY_ZEROPOINT
from lumos_ops.exceptions import LumosValueError
from lumos_ops.sim.seds import EBV_MAX, TEMPLATE_NAMES, Z_MAX, galaxy_band_fluxes

__all__ = ["TemplateGridConfig", "TemplateGrid", "build_template_grid"]


@dataclasses.dataclass(frozen=True)
class TemplateGridConfig:
    """Axes of the template grid.

    Attributes
    ----------
    sed_types : tuple of float
        Continuous CWW types in [0, 3] (0 = E, 1 = Sbc, 2 = Scd, 3 = Im; fractional values mix the
        two neighbours as the simulator does). Default 0, 0.25 ... 3.
    ebvs : tuple of float
        Calzetti colour excesses E(B-V) in [0, 0.5] mag. Default 0, 0.05 ... 0.5.
    z_min, z_max, z_step : float
        Redshift grid ``z_min, z_min + z_step ... <= z_max`` within [0, 2]. Default 0.005 ... 1.8
        in steps of 0.005 (the simulator tabulates its templates every 0.005).
    """

    sed_types: tuple[float, ...] = tuple(np.round(np.arange(0.0, 3.0001, 0.25), 6))
    ebvs: tuple[float, ...] = tuple(np.round(np.arange(0.0, 0.5001, 0.05), 6))
    z_min: float = 0.005
    z_max: float = 1.8
    z_step: float = 0.005

    def __post_init__(self) -> None:
        for name, values, high in (("sed_types", self.sed_types, len(TEMPLATE_NAMES) - 1.0), ("ebvs", self.ebvs, EBV_MAX)):
            arr = np.asarray(values, dtype=np.float64)
            if arr.ndim != 1 or arr.size == 0:
                raise LumosValueError(f"TemplateGridConfig.{name} must be a non-empty sequence of numbers")
            if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > high:
                raise LumosValueError(f"TemplateGridConfig.{name} must lie in [0, {high}], got {tuple(values)}")
            object.__setattr__(self, name, tuple(float(v) for v in arr))
        if not (0.0 <= self.z_min < self.z_max <= Z_MAX):
            raise LumosValueError(
                f"TemplateGridConfig needs 0 <= z_min < z_max <= {Z_MAX}, got z_min={self.z_min}, z_max={self.z_max}"
            )
        if not (0.0 < self.z_step <= 0.5 * (self.z_max - self.z_min) + 1e-9):
            raise LumosValueError(
                f"TemplateGridConfig.z_step must lie in (0, (z_max - z_min) / 2] (at least 3 redshifts), got {self.z_step}"
            )

    def z_grid(self) -> np.ndarray:
        """Redshift grid, shape (n_z,)."""
        n = int(np.floor((self.z_max - self.z_min) / self.z_step + 1e-9)) + 1
        return self.z_min + self.z_step * np.arange(n)


@dataclasses.dataclass(frozen=True)
class TemplateGrid:
    """Model fluxes on the (type, E(B-V), z) grid.

    Attributes
    ----------
    sed_type : ndarray, shape (n_t,)
    ebv : ndarray, shape (n_e,)
        E(B-V) (mag).
    z : ndarray, shape (n_z,)
    bands : tuple of str
        Band order of the last axis of ``models``.
    models : ndarray, shape (n_t, n_e, n_z, n_bands), float64
        Flux density (nJy) of a source with 1 nJy in the i band.
    """

    sed_type: np.ndarray
    ebv: np.ndarray
    z: np.ndarray
    bands: tuple[str, ...]
    models: np.ndarray

    @property
    def n_models(self) -> int:
        """Number of grid points ``n_t * n_e * n_z``."""
        return int(np.prod(self.models.shape[:3]))

    def flat_models(self) -> np.ndarray:
        """Models as a matrix, shape (n_t * n_e * n_z, n_bands), C order (type slowest, z fastest)."""
        return self.models.reshape(self.n_models, len(self.bands))

    def select_bands(self, bands: Sequence[str]) -> TemplateGrid:
        """Grid restricted (and reordered) to ``bands``."""
        unknown = [b for b in bands if b not in self.bands]
        if unknown:
            raise LumosValueError(f"bands {unknown} are not in the template grid (has {self.bands[0]}...{self.bands[-1]})")
        index = [self.bands.index(b) for b in bands]
        return dataclasses.replace(self, bands=tuple(bands), models=np.ascontiguousarray(self.models[..., index]))


def build_template_grid(config: TemplateGridConfig | None = None, *, bands: Sequence[str] = NB_BANDS) -> TemplateGrid:
    """Tabulate the simulator's galaxy SEDs on the photo-z grid.

    Parameters
    ----------
    config : TemplateGridConfig, optional
        Grid axes (defaults: 13 types x 11 E(B-V) x 360 redshifts).
    bands : sequence of str, keyword-only
        Narrow bands to tabulate (default all 40, ``NB455`` ... ``NB845``).

    Returns
    -------
    TemplateGrid
        Cached per (config, bands); its arrays are read-only.
    """
    return _cached_grid(config or TemplateGridConfig(), tuple(bands))


@functools.lru_cache(maxsize=4)
def _cached_grid(config: TemplateGridConfig, bands: tuple[str, ...]) -> TemplateGrid:
    unknown = [b for b in bands if b not in NB_BANDS]
    if unknown or len(bands) == 0:
        raise LumosValueError(f"bands must be a non-empty subset of NB455...NB845, got unknown {unknown}")
    sed_type = np.asarray(config.sed_types)
    ebv = np.asarray(config.ebvs)
    z = config.z_grid()
    t, e, zz = np.meshgrid(sed_type, ebv, z, indexing="ij")
    fluxes = galaxy_band_fluxes(i_auto=np.full(t.size, NJY_ZEROPOINT), z=zz.ravel(), sed_type=t.ravel(), ebv=e.ravel())
    index = [NB_BANDS.index(b) for b in bands]
    models = np.ascontiguousarray(fluxes[:, index].reshape(len(sed_type), len(ebv), len(z), len(index)))
    for array in (sed_type, ebv, z, models):
        array.flags.writeable = False
    return TemplateGrid(sed_type=sed_type, ebv=ebv, z=z, bands=bands, models=models)
