"""Validated configuration dataclasses of the LUMOS network and of its input normalisation."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from lumos_ops.constants import CCD_SHAPE, STAMP_SIZE, n_band_epochs
from lumos_ops.exceptions import LumosValueError

__all__ = ["ANCHORS", "ModelConfig", "Normalization", "N_SCALARS", "SCALAR_NAMES", "STAMP_BACKGROUNDS"]

SCALAR_NAMES: tuple[str, ...] = ("i_auto", "ccd_x", "ccd_y", "background")
"""Order of the scalar network inputs besides the band x epoch embedding (see :class:`Normalization`)."""

N_SCALARS: int = len(SCALAR_NAMES)

ANCHORS: tuple[str, ...] = ("none", "matched_filter", "matched_filter_residual")
"""What the mixture is measured from (:class:`ModelConfig`'s ``anchor``): ``"none"``, the network's
outputs alone; ``"matched_filter"``, the stamp's matched-filter flux and its error
(:meth:`lumos_ops.lumos.model.LumosNet.matched_filter`), which the network corrects;
``"matched_filter_residual"``, the same with a width head that scales the widths by how far the
stamp's pixels depart from its model (:meth:`lumos_ops.lumos.model.LumosNet.model_departure`)."""


PROFILE_ERRORS: tuple[str, ...] = ("none", "dilation")
"""Parameter-free profile-error terms a network can add to its widths (:class:`ModelConfig`'s
``profile_error``)."""


def _positive_ints(name: str, values: tuple[int, ...], *, allow_empty: bool = False) -> tuple[int, ...]:
    values = tuple(int(v) for v in values)
    if not values and not allow_empty:
        raise LumosValueError(f"{name} must not be empty")
    if any(v < 1 for v in values):
        raise LumosValueError(f"{name} must hold integers >= 1, got {values}")
    return values


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a LUMOS network (§4.2).

    Each convolutional block is ``Conv2d(k, padding=k // 2) -> MaxPool2d(2) -> BatchNorm2d -> ReLU``.
    The flattened features are concatenated with the scalar inputs (:data:`SCALAR_NAMES`) and the
    trainable band x epoch embedding, then pass through fully connected ReLU layers of sizes
    ``hidden`` and a final linear layer with ``3 * n_components`` outputs (alpha, mu, sigma).

    Attributes
    ----------
    channels : tuple of int
        Channels of the input (2: cutout and model image) and after every block.
    kernels : tuple of int
        Convolution kernel side of every block (``len(channels) - 1`` values).
    hidden : tuple of int
        Sizes of the fully connected hidden layers.
    n_components : int
        Gaussian components of the mixture (5 in the paper).
    n_band_epochs : int
        Rows of the band x epoch embedding (80 for PAUS).
    embedding_dim : int
        Features per band x epoch row (10 in the paper).
    stamp_size : int
        Side of the input stamps (pixels).
    sigma_floor : float
        Lower bound added to every component width, in normalised flux units.
    inputs : tuple of str
        Scalar inputs the network sees (a subset of :data:`SCALAR_NAMES`); the others are zeroed,
        e.g. ``inputs=("ccd_x", "ccd_y", "background")`` for a model blind to the catalogue i_auto.
    anchor : str
        :data:`ANCHORS` entry. ``"matched_filter"``: the network computes from its two image channels
        the model-weighted flux ``f_mf = sum(m (d - b)) / sum(m^2)`` and its error ``s_mf`` for the
        stamp's robust pixel noise, sees ``asinh(f_mf / s_mf)``, ``log s_mf`` and the log pixel noise
        as three more features, and outputs every component as ``mu = f_mf + s_mf * mu_net``,
        ``sigma = s_mf * (softplus(sigma_net) + sigma_floor)``: an isolated galaxy that is its model
        starts from the optimal weighted sum, and the network learns what to correct (neighbours,
        backgrounds, profiles). ``"matched_filter_residual"``: the same, and a width head scales
        every ``sigma`` by ``exp(h)``, ``h`` a small MLP of how far the pixels depart from the model
        after the matched-filter fit (chi-square excess, dilation, free-size flux shift, asymmetry),
        so that the mixture can be wider for a galaxy that is not its model; the means are the main
        network's. ``"none"``: the outputs alone (every model before ``fast-mf``).
    profile_error : str
        :data:`PROFILE_ERRORS` entry. ``"dilation"`` (anchored networks): every component's width
        gets, in quadrature, the profile error the stamp shows, with no learnt parameter: the
        free-size flux shift's square in excess of its noise variance, when the dilation is detected
        at 2 sigma (:meth:`lumos_ops.lumos.model.LumosNet.profile_variance`). ``"none"``: nothing.
    """

    channels: tuple[int, ...] = (2, 32, 64, 128, 64, 32)
    kernels: tuple[int, ...] = (9, 7, 5, 3, 2)
    hidden: tuple[int, ...] = (2000, 1000, 100)
    n_components: int = 5
    n_band_epochs: int = n_band_epochs()
    embedding_dim: int = 10
    stamp_size: int = STAMP_SIZE
    sigma_floor: float = 1e-3
    inputs: tuple[str, ...] = SCALAR_NAMES
    anchor: str = "none"
    profile_error: str = "none"

    def __post_init__(self) -> None:
        if self.anchor not in ANCHORS:
            raise LumosValueError(f"anchor must be one of {ANCHORS}, got {self.anchor!r}")
        if self.profile_error not in PROFILE_ERRORS:
            raise LumosValueError(f"profile_error must be one of {PROFILE_ERRORS}, got {self.profile_error!r}")
        if self.profile_error != "none" and self.anchor == "none":
            raise LumosValueError("profile_error needs an anchored network (anchor 'matched_filter')")
        object.__setattr__(self, "inputs", tuple(str(v) for v in self.inputs))
        unknown = [v for v in self.inputs if v not in SCALAR_NAMES]
        if unknown:
            raise LumosValueError(f"inputs must be a subset of {SCALAR_NAMES}, got unknown {unknown}")
        object.__setattr__(self, "channels", _positive_ints("channels", self.channels))
        object.__setattr__(self, "kernels", _positive_ints("kernels", self.kernels))
        object.__setattr__(self, "hidden", _positive_ints("hidden", self.hidden, allow_empty=True))
        if self.channels[0] != 2:
            raise LumosValueError(f"channels[0] must be 2 (cutout and model image), got {self.channels[0]}")
        if len(self.kernels) != len(self.channels) - 1:
            raise LumosValueError(
                f"kernels needs one value per block: {len(self.channels) - 1} for channels={self.channels}, "
                f"got {len(self.kernels)}"
            )
        for name in ("n_components", "n_band_epochs", "embedding_dim", "stamp_size"):
            if int(getattr(self, name)) < 1:
                raise LumosValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.sigma_floor) and self.sigma_floor > 0):
            raise LumosValueError(f"sigma_floor must be > 0, got {self.sigma_floor}")
        if self.feature_side() < 1:
            raise LumosValueError(
                f"stamp_size={self.stamp_size} is too small for {len(self.kernels)} pooling blocks; "
                "use fewer blocks or larger stamps"
            )

    def block_sides(self) -> tuple[int, ...]:
        """Feature-map side after every block (pixels), starting from ``stamp_size``."""
        sides = []
        side = self.stamp_size
        for k in self.kernels:
            side = (side + 2 * (k // 2) - k + 1) // 2
            sides.append(side)
        return tuple(sides)

    def feature_side(self) -> int:
        """Side of the last feature map."""
        return self.block_sides()[-1]

    def to_dict(self) -> dict[str, Any]:
        """Plain-python dict (lists for tuples), suitable for checkpoints and JSON; without ``anchor``
        when it is ``"none"``, so that an unanchored checkpoint stays readable by code without it, and
        likewise without ``profile_error`` when it is ``"none"``."""
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        if self.anchor == "none":
            del values["anchor"]
        if self.profile_error == "none":
            del values["profile_error"]
        return values

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`LumosValueError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise LumosValueError(f"unknown ModelConfig field(s) {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


STAMP_BACKGROUNDS: tuple[str, ...] = ("median", "masked_annulus")
"""How a stamp's background ``b`` is estimated (:func:`lumos_ops.lumos.preprocess.stamp_background`);
a checkpoint's :class:`Normalization` records the one its network was trained with."""


@dataclasses.dataclass(frozen=True)
class Normalization:
    """How raw inputs become network inputs and how outputs become e-/s (stored in checkpoints).

    * Cutout (e-/s per pixel): ``b`` is the stamp's background by ``stamp_background``
      (:data:`STAMP_BACKGROUNDS`; ``"median"``: the median of the finite pixels;
      ``"masked_annulus"``: the mean of the sky pixels of the annulus between a quarter and half a
      stamp from the centre, sources detected in it left out), NaN pixels are replaced by ``b``;
      then ``r = (cutout - b) / pixel_scale`` and
      ``pixel_soft * asinh(r / pixel_soft)``: linear within about ``pixel_soft`` noise units (the
      faint galaxies that matter), logarithmic beyond, so that a saturated star or a cosmic ray in
      one stamp cannot dominate the BatchNorm statistics of a whole batch.
    * Model image (unit total flux): multiplied by ``model_scale``.
    * ``i_auto`` (AB mag): clipped into ``imag_range`` when it is set, then
      ``(i_auto - imag_mean) / imag_std``. ``imag_range`` is the range of the training stamps'
      ``i_auto``: the network has learnt nothing about magnitudes outside it, and a likelihood model
      (whose training fluxes are independent of ``i_auto``) should not read the flux from it, so a
      target fainter or brighter than every training galaxy gets the nearest trained magnitude
      instead of an extrapolation (docs/likelihood.md, section 7). ``None``: no clipping.
    * CCD position of the stamp centre (pixels, x = column): mapped linearly to [-1, 1] with
      ``2 * x / (nx - 1) - 1`` and ``2 * y / (ny - 1) - 1``, ``(ny, nx) = ccd_shape``.
    * Background ``b`` (e-/s per pixel): ``(b - background_mean) / background_std``.
    * Output mixture: ``mu [e-/s] = flux_scale * mu_net``, ``sigma [e-/s] = flux_scale * sigma_net``;
      the weights alpha are unit-free.

    All scales must be finite and positive.
    """

    pixel_scale: float = 1.0
    pixel_soft: float = 10.0
    model_scale: float = 100.0
    flux_scale: float = 100.0
    imag_mean: float = 22.0
    imag_std: float = 1.0
    background_mean: float = 0.0
    background_std: float = 1.0
    ccd_shape: tuple[int, int] = CCD_SHAPE
    stamp_background: str = "median"
    imag_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("pixel_scale", "pixel_soft", "model_scale", "flux_scale", "imag_std", "background_std"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise LumosValueError(f"Normalization.{name} must be finite and > 0, got {value}")
            object.__setattr__(self, name, value)
        for name in ("imag_mean", "background_mean"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise LumosValueError(f"Normalization.{name} must be finite, got {getattr(self, name)}")
            object.__setattr__(self, name, value)
        if self.stamp_background not in STAMP_BACKGROUNDS:
            raise LumosValueError(
                f"Normalization.stamp_background must be one of {STAMP_BACKGROUNDS}, got {self.stamp_background!r}"
            )
        shape = tuple(int(v) for v in self.ccd_shape)
        if len(shape) != 2 or min(shape) < 2:
            raise LumosValueError(f"Normalization.ccd_shape must be (ny, nx) with both >= 2, got {self.ccd_shape}")
        object.__setattr__(self, "ccd_shape", shape)
        if self.imag_range is not None:
            lo, hi = (float(v) for v in self.imag_range)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise LumosValueError(f"Normalization.imag_range must be (low, high) AB mag with low < high, got {self.imag_range}")
            object.__setattr__(self, "imag_range", (lo, hi))

    def to_dict(self) -> dict[str, Any]:
        """Plain-python dict for checkpoints and JSON."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise LumosValueError(f"unknown Normalization field(s) {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
