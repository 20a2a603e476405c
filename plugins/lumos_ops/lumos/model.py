"""The LUMOS CNN + mixture density network (§4.2) and its model registry."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.config import N_SCALARS, SCALAR_NAMES, ModelConfig

__all__ = ["MixtureParams", "LumosNet", "MODEL_CONFIGS", "DEFAULT_MODEL", "get_model", "get_config", "list_models"]


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
}
"""Named architectures: ``"paper"`` is the reference of §4.2; ``"fast"`` a CPU-friendly default."""

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
    :class:`MixtureParams` in normalised flux units. ``sigma = softplus(raw) + sigma_floor``.
    Scalars not listed in ``config.inputs`` are multiplied by zero.
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
        layers: list[nn.Module] = []
        for n_out in config.hidden:
            layers += [nn.Linear(n_in, n_out), nn.ReLU(inplace=True)]
            n_in = n_out
        self.hidden = nn.Sequential(*layers)
        self.head = nn.Linear(n_in, 3 * config.n_components)

    def forward(self, images: torch.Tensor, scalars: torch.Tensor, band_epoch: torch.Tensor) -> MixtureParams:
        """Mixture parameters for a batch (see the class notes for shapes)."""
        x = self.features(images).flatten(1)
        x = torch.cat([x, (scalars * self.scalar_mask).to(x.dtype), self.embedding(band_epoch).to(x.dtype)], dim=1)
        out = self.head(self.hidden(x)).float()
        k = self.config.n_components
        log_alpha = F.log_softmax(out[:, :k], dim=1)
        mu = out[:, k : 2 * k]
        sigma = F.softplus(out[:, 2 * k :]) + self.config.sigma_floor
        return MixtureParams(log_alpha, mu, sigma)


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
