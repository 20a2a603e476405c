"""The arrays every classical estimator works on: data and model cutouts on one pixel grid."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from lumos_ops.constants import ANNULUS_RADII
from lumos_ops.exceptions import LumosValueError
from lumos_ops.photometry.background import AnnulusBackground, annulus_background

__all__ = ["PhotometryInputs", "wide_stamp_size", "pad_models"]


def wide_stamp_size(stamp_size: int, *, r_out: float = ANNULUS_RADII[1]) -> int:
    """Smallest cutout side >= ``stamp_size`` with the same parity that holds the whole annulus.

    The annulus of outer radius ``r_out`` around a target anywhere in its centre pixel needs
    ``2 * ceil(r_out) + 3`` pixels (93 for PAUS' 45 px), rounded up to the parity of
    ``stamp_size`` so that both grids share the centre pixel ``size // 2`` (94 for 60 px stamps).
    """
    need = max(int(stamp_size), 2 * math.ceil(r_out) + 3)
    if (need - stamp_size) % 2:
        need += 1
    return need


def pad_models(models: np.ndarray, size: int) -> np.ndarray:
    """Embed ``(n, S, S)`` model stamps centred on ``S // 2`` in zero ``(n, size, size)`` stamps.

    ``size - S`` must be even so that the centre pixel ``S // 2`` maps onto ``size // 2``.
    """
    n, s = models.shape[0], models.shape[-1]
    if size < s or (size - s) % 2:
        raise LumosValueError(f"cannot pad {s} px models to {size} px: size - {s} must be even and >= 0")
    pad = (size - s) // 2
    out = np.zeros((n, size, size), dtype=np.float32)
    out[:, pad : pad + s, pad : pad + s] = models
    return out


@dataclasses.dataclass(frozen=True)
class PhotometryInputs:
    """Cutouts of ``n`` targets and their catalogue models on a shared ``S x S`` grid.

    Attributes
    ----------
    data : ndarray, shape (n, S, S), float32
        Image pixels (e-/s per pixel); NaN marks masked or off-image pixels, which every estimator
        ignores. ``S`` must be >= 92 for the PAUS background annulus (30-45 px) to be complete.
    model : ndarray, shape (n, S, S), float32
        PSF-convolved, pixel-integrated Sersic model of each target with unit total flux (the light
        falling outside the grid is missing from the sum).
    dx, dy : ndarray, shape (n,)
        Target position relative to the centre pixel ``(S//2, S//2)`` (pixels, in [-0.5, 0.5)).
    q, pa : ndarray, shape (n,)
        Catalogue axis ratio b/a and position angle (degrees, counter-clockwise from +x).
    exptime : ndarray, shape (n,)
        Exposure time (s) used for the source shot noise ``signal / exptime`` ((e-/s)^2 per pixel);
        ``inf`` neglects it.
    on_chip : ndarray of bool, shape (n, S, S), or None
        Which cutout pixels lie on the CCD (None: all); tells CCD edges (flag EDGE) from masked
        pixels (flag MASKED).
    saturate : ndarray, shape (n,)
        Saturation level (e-/s per pixel); ``inf`` when unknown.
    measurable : ndarray of bool, shape (n,)
        False for targets whose centre is off the image: their flux is NaN.
    source_mask : ndarray of bool, shape (n, S, S), or None
        Pixels of sources detected on the whole frame
        (:func:`lumos_ops.photometry.frame_sources.frame_sources`), which the background leaves
        out of the annulus; None: sources are detected in each cutout instead.
    exclude : ndarray of bool, shape (n, S, S), or None
        Pixels of other detected sources (:func:`lumos_ops.photometry.frame_sources.other_sources`)
        that the model-weighted sums (optimal, profile fit: :func:`~lumos_ops.photometry.modelfit.fit_pixels`)
        leave out, as they leave out masked pixels (the model tells how much light they held), without
        flagging the target MASKED; None: none.
    """

    data: np.ndarray
    model: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    q: np.ndarray
    pa: np.ndarray
    exptime: np.ndarray
    on_chip: np.ndarray | None
    saturate: np.ndarray
    measurable: np.ndarray
    source_mask: np.ndarray | None = None
    exclude: np.ndarray | None = None

    @classmethod
    def from_arrays(
        cls,
        data: np.ndarray,
        model: np.ndarray,
        *,
        dx: np.ndarray | float = 0.0,
        dy: np.ndarray | float = 0.0,
        q: np.ndarray | float = 1.0,
        pa: np.ndarray | float = 0.0,
        exptime: np.ndarray | float | None = None,
        on_chip: np.ndarray | None = None,
        saturate: np.ndarray | float | None = None,
        measurable: np.ndarray | None = None,
        source_mask: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
    ) -> PhotometryInputs:
        """Validate and broadcast arrays (see the class attributes for shapes and units)."""
        data = np.asarray(data, dtype=np.float32)
        model = np.asarray(model, dtype=np.float32)
        if data.ndim != 3 or data.shape[1] != data.shape[2]:
            raise LumosValueError(f"data must have shape (n, S, S), got {data.shape}")
        if model.shape != data.shape:
            raise LumosValueError(f"model must have the shape of data {data.shape}, got {model.shape}")
        n = data.shape[0]

        def vector(name: str, value: np.ndarray | float | None, default: float) -> np.ndarray:
            array = np.asarray(default if value is None else value, dtype=np.float64)
            try:
                return np.broadcast_to(array, (n,)).copy()
            except ValueError:
                raise LumosValueError(f"{name} must be a scalar or have shape ({n},), got {array.shape}") from None

        exptime_v = vector("exptime", exptime, np.inf)
        if np.any(~(exptime_v > 0)):
            raise LumosValueError("exptime must be > 0 s (use None to neglect the source shot noise)")
        q_v = vector("q", q, 1.0)
        if np.any(~((q_v > 0) & (q_v <= 1))):
            raise LumosValueError("q must be in (0, 1]")
        if on_chip is not None:
            on_chip = np.asarray(on_chip, dtype=bool)
            if on_chip.shape != data.shape:
                raise LumosValueError(f"on_chip must have the shape of data {data.shape}, got {on_chip.shape}")
        if source_mask is not None:
            source_mask = np.asarray(source_mask, dtype=bool)
            if source_mask.shape != data.shape:
                raise LumosValueError(f"source_mask must have the shape of data {data.shape}, got {source_mask.shape}")
        if exclude is not None:
            exclude = np.asarray(exclude, dtype=bool)
            if exclude.shape != data.shape:
                raise LumosValueError(f"exclude must have the shape of data {data.shape}, got {exclude.shape}")
        measurable_v = np.ones(n, dtype=bool) if measurable is None else np.asarray(measurable, dtype=bool)
        if measurable_v.shape != (n,):
            raise LumosValueError(f"measurable must have shape ({n},), got {measurable_v.shape}")
        return cls(
            data=data,
            model=model,
            dx=vector("dx", dx, 0.0),
            dy=vector("dy", dy, 0.0),
            q=q_v,
            pa=vector("pa", pa, 0.0),
            exptime=exptime_v,
            on_chip=on_chip,
            saturate=vector("saturate", saturate, np.inf),
            measurable=measurable_v,
            source_mask=source_mask,
            exclude=exclude,
        )

    @property
    def n(self) -> int:
        """Number of targets."""
        return int(self.data.shape[0])

    @property
    def size(self) -> int:
        """Cutout side S (pixels)."""
        return int(self.data.shape[-1])

    @functools.cached_property
    def background(self) -> AnnulusBackground:
        """PAUS background: source-masked, clipped mean of the 30-45 px annulus around each target (computed once)."""
        return annulus_background(self.data, self.dx, self.dy, source_mask=self.source_mask)

    def take(self, index: np.ndarray | slice) -> PhotometryInputs:
        """The inputs of a subset of the targets (a chunk); shares the background if computed."""
        sub = PhotometryInputs(
            data=self.data[index],
            model=self.model[index],
            dx=self.dx[index],
            dy=self.dy[index],
            q=self.q[index],
            pa=self.pa[index],
            exptime=self.exptime[index],
            on_chip=None if self.on_chip is None else self.on_chip[index],
            saturate=self.saturate[index],
            measurable=self.measurable[index],
            source_mask=None if self.source_mask is None else self.source_mask[index],
            exclude=None if self.exclude is None else self.exclude[index],
        )
        if "background" in self.__dict__:
            sub.__dict__["background"] = self.background.take(index)
        return sub

    def off_chip_mask(self) -> np.ndarray:
        """Boolean (n, S, S): pixels off the CCD."""
        if self.on_chip is None:
            return np.zeros(self.data.shape, dtype=bool)
        return ~self.on_chip
