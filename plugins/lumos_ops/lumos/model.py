"""The LUMOS CNN + mixture density network (§4.2) and its model registry."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.config import N_SCALARS, SCALAR_NAMES, ModelConfig, Normalization

__all__ = ["MixtureParams", "LumosNet", "anchor_constants_of", "widened_state", "ANCHOR_FEATURES", "DEPARTURE_FEATURES",
           "MODEL_CONFIGS", "DEFAULT_MODEL", "get_model", "get_config", "list_models"]


class MixtureParams(NamedTuple):
    """Gaussian-mixture output of the network, each of shape (batch, n_components).

    Attributes
    ----------
    log_alpha : Tensor
        Log mixing weights (log-softmax; ``exp`` sums to 1 over components).
    mu : Tensor
        Component means (normalised flux units unless stated otherwise).
    sigma : Tensor
        Component standard deviations (> 0, same unit as ``mu``).
    """

    log_alpha: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor

    def scaled(self, scale: float | torch.Tensor) -> MixtureParams:
        """The same mixture with fluxes multiplied by ``scale`` (scalar or shape (batch, 1))."""
        return MixtureParams(self.log_alpha, self.mu * scale, self.sigma * scale)


MODEL_CONFIGS: dict[str, ModelConfig] = {
    "paper": ModelConfig(),
    "fast": ModelConfig(channels=(2, 8, 16, 32, 32, 16), kernels=(5, 3, 3, 3, 2), hidden=(256, 64)),
    "fast-mf": ModelConfig(channels=(2, 8, 16, 32, 32, 16), kernels=(5, 3, 3, 3, 2), hidden=(256, 64),
                           anchor="matched_filter"),
    "fast-mf-r": ModelConfig(channels=(2, 8, 16, 32, 32, 16), kernels=(5, 3, 3, 3, 2), hidden=(256, 64),
                             anchor="matched_filter_residual"),
}
"""Named architectures: ``"paper"`` is the reference of §4.2; ``"fast"`` a CPU-friendly default;
``"fast-mf"`` the same anchored on the stamp's matched-filter flux (``ModelConfig.anchor``);
``"fast-mf-r"`` that with a width head that sees how far the pixels depart from the model."""

ANCHOR_FEATURES: dict[str, int] = {"none": 0, "matched_filter": 3, "matched_filter_residual": 3}
"""Features each ``ModelConfig.anchor`` adds to the fully connected input, after the embedding:
``asinh(f_mf / s_mf)``, ``log s_mf`` and the log of the stamp's robust pixel noise
(:meth:`LumosNet.matched_filter`)."""

DEPARTURE_FEATURES: int = 5
"""The numbers of :meth:`LumosNet.model_departure` that the width head of a
``"matched_filter_residual"`` network sees (``asinh`` of each, the fraction in percent), and nothing
else: not the SNR, so that it widens a stamp for a departure its pixels show, never for one that
the training set's galaxies had on average."""

WIDTH_HIDDEN: int = 32
"""Hidden units of the width head."""

DEFAULT_MODEL: str = "fast"


class LumosNet(nn.Module):
    """CNN feature extractor + MDN head.

    Parameters
    ----------
    config : ModelConfig
        Architecture.

    Notes
    -----
    ``forward(images, scalars, band_epoch)`` takes normalised inputs (see
    :class:`lumos_ops.lumos.config.Normalization` and :mod:`lumos_ops.lumos.preprocess`):
    images (B, 2, S, S) float, scalars (B, 4) float, band_epoch (B,) int64, and returns
    :class:`MixtureParams` in normalised flux units. ``sigma = softplus(raw) + sigma_floor``, or for
    an anchored network ``mu = f_mf + s_mf * raw_mu`` and ``sigma = s_mf * (softplus(raw) + sigma_floor)``
    (:meth:`matched_filter`). Scalars not listed in ``config.inputs`` are multiplied by zero.

    A ``"matched_filter_residual"`` network also has a width head: a small MLP of the five numbers of
    :meth:`model_departure` whose output ``h`` scales every width,
    ``sigma = s_mf * (softplus(raw) + sigma_floor) * exp(h)``. The departure reaches the widths only,
    never the means: how far the pixels depart from the model says how much the flux is to be
    trusted, while the flux itself stays what the main network measures. Its last layer starts at
    zero, so a new width head changes nothing until trained (:func:`widened_state`).

    An anchored network (``config.anchor`` other than ``"none"``) needs the normalisation its inputs
    are made with: :meth:`bind_normalization` stores ``pixel_soft`` and
    ``pixel_scale * model_scale / flux_scale`` in the buffer ``anchor_constants`` (saved with the
    weights; NaN until bound, so an unbound network returns NaN rather than wrong fluxes).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        blocks: list[nn.Module] = []
        for c_in, c_out, k in zip(config.channels[:-1], config.channels[1:], config.kernels):
            blocks += [
                nn.Conv2d(c_in, c_out, kernel_size=k, padding=k // 2),
                nn.MaxPool2d(2),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*blocks)
        self.embedding = nn.Embedding(config.n_band_epochs, config.embedding_dim)
        mask = torch.tensor([1.0 if name in config.inputs else 0.0 for name in SCALAR_NAMES])
        self.register_buffer("scalar_mask", mask, persistent=False)
        n_in = config.channels[-1] * config.feature_side() ** 2 + N_SCALARS + config.embedding_dim
        n_in += ANCHOR_FEATURES[config.anchor]
        layers: list[nn.Module] = []
        for n_out in config.hidden:
            layers += [nn.Linear(n_in, n_out), nn.ReLU(inplace=True)]
            n_in = n_out
        self.hidden = nn.Sequential(*layers)
        self.head = nn.Linear(n_in, 3 * config.n_components)
        self.anchored = config.anchor != "none"
        self.width_head: nn.Module | None = None
        if config.anchor == "matched_filter_residual":
            last = nn.Linear(WIDTH_HIDDEN, 1)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.width_head = nn.Sequential(nn.Linear(DEPARTURE_FEATURES, WIDTH_HIDDEN), nn.ReLU(), last)
        if self.anchored:
            self.register_buffer("anchor_constants", torch.full((2,), math.nan))
            side = config.stamp_size
            yy, xx = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                                    indexing="ij")
            centre = (side - 1) / 2.0
            outer = torch.hypot(yy - centre, xx - centre) >= side / 4.0
            self.register_buffer("noise_pixels", torch.flatten(outer).nonzero().flatten(), persistent=False)
            self.register_buffer("offsets", torch.stack([yy - centre, xx - centre]), persistent=False)

    def bind_normalization(self, norm: Normalization) -> None:
        """Store the constants an anchored network needs from ``norm`` (a no-op for other networks)."""
        if self.anchored:
            values = anchor_constants_of(norm)
            with torch.no_grad():
                self.anchor_constants.copy_(torch.tensor(values, dtype=self.anchor_constants.dtype))

    def matched_filter(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Matched-filter flux, its error and the pixel noise of each stamp of a normalised batch.

        Channel 0 is un-stretched to ``r = (d - b) / pixel_scale`` and channel 1 is the model ``m`` times
        ``model_scale``; the weights are the model's, uniform noise assumed (the background-limited
        regime of faint galaxies). Pixels that are exactly 0 in channel 0 are the ones
        :func:`~lumos_ops.lumos.preprocess.prepare_inputs` padded (NaN, masked or off the CCD): they
        are left out of ``sum(m^2)`` and of the noise, so that a target at a CCD edge or with masked
        pixels keeps an unbiased flux and the error of the pixels it has.

        Returns
        -------
        flux, error, noise : Tensor, each (B,)
            ``f_mf = sum(m r) / sum(m^2)`` and ``s_mf = noise / sqrt(sum(m^2))`` in normalised flux
            units, and ``noise``, 1.4826 x the MAD of ``r`` over the measured pixels at least a quarter
            of a stamp from the centre (units of ``pixel_scale``; 1 when none is measured; floored at
            1e-3).
        """
        r, m, measured = self._pixels(images)
        weighted, power, noise = self._fit(r, m, measured)
        scale = self.anchor_constants[1]
        return scale * weighted / power, scale * noise / power.sqrt(), noise

    def model_departure(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """How far each stamp's pixels depart from its model after the matched-filter fit.

        With the residual ``e = r - a m`` of the fit (``a = sum(m r) / sum(m^2)``, channels as in
        :meth:`matched_filter`) and the weights ``w = m / max(m)`` on the measured pixels, the
        model-weighted chi-square ``X = sum(w e^2) / noise^2`` has the expectation ``sum(w)`` and the
        spread ``sqrt(2 sum(w^2))`` when the stamp is its model plus uniform Gaussian noise. The
        source's own photon noise raises ``X`` too; the two signed numbers below do not feel it on
        average. They come from the fit ``r = a2 m + c t`` with the model's dilation
        ``t = -(x dm/dx + y dm/dy)`` about the stamp centre (pixels): a galaxy ``1 + eps`` times the
        size of its model (profile or PSF) is, to first order, ``(1 - 2 eps) m + eps t`` times its
        flux, whose total light is ``a2 sum(m) + c sum(t)``.

        Returns
        -------
        significance, fraction, dilation, shift, asymmetry : Tensor, each (B,)
            ``(X - sum(w)) / sqrt(2 sum(w^2))``; the same excess over the source's weighted power
            ``a^2 sum(w m^2) / noise^2`` (floored at 1), the share of the galaxy's light the model
            misses; ``c`` over its error for uniform noise (> 0: the galaxy is larger than its
            model); and ``a2 + c sum(t) / sum(m) - a`` over the matched filter's error
            ``noise / sqrt(sum(m^2))``: the flux change a free size would make, in units of ``s_mf``;
            ``(Y - sum(v)) / (2 sqrt(sum(v^2)))`` with ``Y = sum(v (e - e') ^ 2) / (2 noise^2)``, ``e'``
            the rotated residual and ``v = min(w, w')`` on pixels measured in both (mean 0 and
            spread 1 for a galaxy that is its model on white noise).
        """
        r, m, measured = self._pixels(images)
        weighted, power, noise = self._fit(r, m, measured)
        fit = self._dilation_fit(r, m, measured, weighted, power, noise)
        return self._departure(r, m, measured, weighted, power, noise, fit)

    def _pixels(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flattened ``r`` (asinh undone), ``m`` and the measured-pixel mask of a normalised batch."""
        soft = self.anchor_constants[0]
        r = (soft * torch.sinh(images[:, 0].float() / soft)).flatten(1)
        m = images[:, 1].float().flatten(1)
        return r, m, r != 0

    def _fit(self, r: torch.Tensor, m: torch.Tensor, measured: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``sum(m r)``, ``sum(m^2)`` over the measured pixels and the robust pixel noise (see
        :meth:`matched_filter`)."""
        power = (m * m * measured).sum(dim=1).clamp_min(1e-12)
        weighted = (m * r).sum(dim=1)
        sky = r.index_select(1, self.noise_pixels)
        sky = torch.where(sky != 0, sky, torch.full_like(sky, math.nan))
        centre = sky.nanmedian(dim=1, keepdim=True).values
        noise = torch.nan_to_num(1.4826 * (sky - centre).abs().nanmedian(dim=1).values, nan=1.0).clamp_min(1e-3)
        return weighted, power, noise

    @staticmethod
    def _departure(r: torch.Tensor, m: torch.Tensor, measured: torch.Tensor, weighted: torch.Tensor,
                   power: torch.Tensor, noise: torch.Tensor, fit: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The five numbers of :meth:`model_departure` from the pieces of :meth:`_fit` and the
        :meth:`_dilation_fit` ``fit``."""
        amplitude = weighted / power
        peak = m.amax(dim=1, keepdim=True).clamp_min(1e-12)
        w = (m / peak).clamp_min(0.0) * measured
        residual = r - amplitude[:, None] * m
        variance = noise * noise
        excess = (w * residual * residual).sum(dim=1) / variance - w.sum(dim=1)
        spread = torch.sqrt(2.0 * (w * w).sum(dim=1)).clamp_min(1e-6)
        source = amplitude * amplitude * (w * m * m).sum(dim=1) / variance
        dilation, shift, _ = fit
        mirrored = residual.flip(1)
        pair = torch.minimum(w, w.flip(1))
        contrast = (pair * (residual - mirrored) ** 2).sum(dim=1) / (2.0 * variance) - pair.sum(dim=1)
        asymmetry = contrast / (2.0 * torch.sqrt((pair * pair).sum(dim=1))).clamp_min(1e-6)
        return excess / spread, excess / source.clamp_min(1.0), dilation, shift, asymmetry

    def _dilation_fit(self, r: torch.Tensor, m: torch.Tensor, measured: torch.Tensor, weighted: torch.Tensor,
                      power: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Dilation significance, free-size flux shift (:meth:`model_departure`) and the shift's
        variance for a galaxy that is its model on uniform noise, ``K^2 sum(m^2) / sum(t'^2)`` with
        ``K = sum(t) / sum(m) - sum(m t) / sum(m^2)`` and ``t'`` the part of ``t`` orthogonal to ``m``
        (units of ``s_mf``)."""
        side = self.config.stamp_size
        image = m.reshape(-1, side, side)
        grad_x = F.pad((image[:, :, 2:] - image[:, :, :-2]) / 2.0, (1, 1))
        grad_y = F.pad((image[:, 2:, :] - image[:, :-2, :]) / 2.0, (0, 0, 1, 1))
        t = -(self.offsets[1] * grad_x + self.offsets[0] * grad_y).flatten(1) * measured
        cross = (m * t).sum(dim=1)
        t_power = ((t * t).sum(dim=1) - cross * cross / power).clamp_min(1e-12)
        c = ((t * r).sum(dim=1) - cross * weighted / power) / t_power
        light = (m * measured).sum(dim=1).clamp_min(1e-12)
        lever = t.sum(dim=1) / light - cross / power
        return c * torch.sqrt(t_power) / noise, c * lever * torch.sqrt(power) / noise, lever * lever * power / t_power

    def profile_variance(self, images: torch.Tensor) -> torch.Tensor:
        """Variance of the profile error each stamp shows, in units of ``s_mf^2`` (``profile_error =
        "dilation"``): ``shift^2 - var`` when ``shift^2 > 4 var`` (the dilation detected at 2 sigma),
        else 0, with ``shift`` and ``var`` of :meth:`_dilation_fit`. For a galaxy larger or smaller
        than its model, ``shift`` estimates the matched filter's error in units of ``s_mf`` and
        ``shift^2 - var`` its square; no training set or prior enters."""
        r, m, measured = self._pixels(images)
        weighted, power, noise = self._fit(r, m, measured)
        return self._profile_variance(self._dilation_fit(r, m, measured, weighted, power, noise))

    @staticmethod
    def _profile_variance(fit: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """:meth:`profile_variance` from the :meth:`_dilation_fit` ``fit``."""
        _, shift, variance = fit
        excess = shift * shift - variance
        return torch.where(shift * shift > 4.0 * variance, excess, torch.zeros_like(excess))

    def forward(self, images: torch.Tensor, scalars: torch.Tensor, band_epoch: torch.Tensor) -> MixtureParams:
        """Mixture parameters for a batch (see the class notes for shapes)."""
        x = self.features(images).flatten(1)
        parts = [x, (scalars * self.scalar_mask).to(x.dtype), self.embedding(band_epoch).to(x.dtype)]
        if self.anchored:
            r, m, measured = self._pixels(images)
            weighted, power, noise = self._fit(r, m, measured)
            scale = self.anchor_constants[1]
            flux, error = scale * weighted / power, scale * noise / power.sqrt()
            anchor = torch.stack([torch.asinh(flux / error), torch.log(error), torch.log(noise)], dim=1)
            parts.append(anchor.to(x.dtype))
        out = self.head(self.hidden(torch.cat(parts, dim=1))).float()
        k = self.config.n_components
        log_alpha = F.log_softmax(out[:, :k], dim=1)
        mu = out[:, k : 2 * k]
        sigma = F.softplus(out[:, 2 * k :]) + self.config.sigma_floor
        if self.anchored:
            mu = flux[:, None] + error[:, None] * mu
            sigma = error[:, None] * sigma
        if self.width_head is not None or self.config.profile_error == "dilation":
            fit = self._dilation_fit(r, m, measured, weighted, power, noise)
        if self.width_head is not None:
            significance, fraction, dilation, shift, asymmetry = self._departure(r, m, measured, weighted, power, noise,
                                                                                 fit)
            departure = torch.stack([torch.asinh(significance), torch.asinh(100.0 * fraction), torch.asinh(dilation),
                                     torch.asinh(shift), torch.asinh(asymmetry)], dim=1)
            sigma = sigma * torch.exp(self.width_head(departure).float())
        if self.config.profile_error == "dilation":
            extra = error * error * self._profile_variance(fit)
            sigma = torch.sqrt(sigma * sigma + extra[:, None])
        return MixtureParams(log_alpha, mu, sigma)


def anchor_constants_of(norm: Normalization) -> tuple[float, float]:
    """``(pixel_soft, pixel_scale * model_scale / flux_scale)`` of ``norm``: the asinh softening of
    channel 0 (units of the pixel noise ``pixel_scale``) and the factor that turns ``sum(m r) / sum(m^2)``
    of the two image channels into a flux in normalised units (of ``flux_scale`` e-/s)."""
    return float(norm.pixel_soft), float(norm.pixel_scale * norm.model_scale / norm.flux_scale)


def widened_state(state: dict[str, torch.Tensor], into: LumosNet) -> dict[str, torch.Tensor]:
    """The weights ``state`` of a ``"matched_filter"`` network completed for ``into``, a
    ``"matched_filter_residual"`` network of otherwise the same configuration, with ``into``'s own
    width head (whose last layer is zero): ``into`` then computes exactly what the other network did
    until training moves the width head."""
    target = into.state_dict()
    head = {k: v for k, v in target.items() if k.startswith("width_head.")}
    if not head:
        raise LumosValueError("cannot widen: the network has no width head (anchor 'matched_filter_residual')")
    wrong = sorted(k for k in target if k not in head and (k not in state or state[k].shape != target[k].shape))
    if wrong or any(k.startswith("width_head.") for k in state):
        raise LumosValueError(f"cannot widen: the weights are not those of the same network without a width head "
                              f"(missing or other shape: {wrong[:4]})")
    return {**state, **{k: v.clone() for k, v in head.items()}}


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`."""
    return sorted(MODEL_CONFIGS)


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """Registered configuration ``name`` with fields replaced by ``overrides``."""
    if name not in MODEL_CONFIGS:
        raise LumosValueError(f"unknown model name {name!r}; choose one of {list_models()}")
    try:
        return dataclasses.replace(MODEL_CONFIGS[name], **overrides)
    except TypeError as exc:
        raise LumosValueError(f"invalid override for model {name!r}: {exc}") from None


def get_model(name: str = DEFAULT_MODEL, **overrides: Any) -> LumosNet:
    """A freshly initialised network of the registered architecture ``name``.

    Examples
    --------
    >>> net = get_model("paper")
    >>> net = get_model("fast", n_components=3)
    """
    return LumosNet(get_config(name, **overrides))
