"""The array operations the renderer needs, on numpy (scipy.fft) or on torch (CPU or GPU).

:mod:`lumos_ops.render.fourier` is written once against this small interface; :func:`get_backend`
picks numpy when no torch device is asked for, so the classical methods render their models
without importing torch, and torch (imported only then) for a device or a tensor result.
Arrays are float32 / complex64 but for the packed table rows (float64 words holding two float32)
and the phases, computed in float64 and rounded to complex64 as on torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import numpy as np

from lumos_ops.exceptions import LumosValueError

__all__ = ["NumpyBackend", "TorchBackend", "get_backend"]


@dataclasses.dataclass(frozen=True)
class NumpyBackend:
    """numpy arrays and ``scipy.fft`` (one thread, complex64 kept)."""

    name: str = "numpy"

    def float32(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array, dtype=np.float32)

    def words(self, array: np.ndarray) -> np.ndarray:
        """A float64 array as it is (the packed table rows)."""
        return np.ascontiguousarray(array)

    def index(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array, dtype=np.int64)

    def empty(self, shape: tuple[int, ...], *, complex_: bool = False) -> np.ndarray:
        return np.empty(shape, dtype=np.complex64 if complex_ else np.float32)

    def lookup(self, packed: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Linear interpolation of the rows of ``packed`` (B, L) at fractional columns ``u`` (B, ...),
        clamped to the table; ``u`` is overwritten (and returned)."""
        np.clip(u, 0.0, packed.shape[1] - 1.0, out=u)
        whole = np.floor(u)
        u -= whole
        flat = whole.astype(np.intp).reshape(packed.shape[0], -1)
        flat += (np.arange(packed.shape[0], dtype=np.intp) * packed.shape[1])[:, None]
        pairs = packed.reshape(-1).take(flat).view(np.float32).reshape(*u.shape, 2)
        np.multiply(pairs[..., 1], u, out=u)
        u += pairs[..., 0]
        return u

    def clamp_min_(self, u: np.ndarray, lo: float) -> np.ndarray:
        return np.maximum(u, lo, out=u)

    def log_(self, u: np.ndarray) -> np.ndarray:
        return np.log(u, out=u)

    def mul_out(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        np.multiply(a, b, out=out)

    def addcmul_(self, out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        out += a * b

    def max_over_rows(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x.max(axis=0), dtype=np.float64)

    def real_parts(self, z: np.ndarray) -> np.ndarray:
        """A view of complex ``z`` as (..., 2) reals."""
        return z.view(np.float32).reshape(*z.shape, 2)

    def unit_phase(self, angle: np.ndarray) -> np.ndarray:
        """``exp(i angle)`` of a float64 angle, as complex64."""
        return (np.cos(angle) + 1j * np.sin(angle)).astype(np.complex64)

    def ifft(self, z: np.ndarray, axis: int) -> np.ndarray:
        import scipy.fft

        return scipy.fft.ifft(z, axis=axis)

    def irfft(self, z: np.ndarray, n: int, axis: int) -> np.ndarray:
        import scipy.fft

        return scipy.fft.irfft(z, n=n, axis=axis)

    def sum_f64(self, x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        return x.sum(axis=axes, dtype=np.float64)

    def numpy(self, x: np.ndarray) -> np.ndarray:
        return x

    def no_grad(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()


@dataclasses.dataclass(frozen=True)
class TorchBackend:
    """torch tensors on ``device`` (CPU or CUDA)."""

    device: Any
    name: str = "torch"

    def float32(self, array: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32, device=self.device)

    def words(self, array: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(np.ascontiguousarray(array), device=self.device)

    def index(self, array: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(np.asarray(array, dtype=np.int64), device=self.device)

    def empty(self, shape: tuple[int, ...], *, complex_: bool = False) -> Any:
        import torch

        return torch.empty(shape, dtype=torch.complex64 if complex_ else torch.float32, device=self.device)

    def lookup(self, packed: Any, u: Any) -> Any:
        """Linear interpolation of the rows of ``packed`` (B, L) at fractional columns ``u`` (B, ...),
        clamped to the table; ``u`` is overwritten."""
        import torch

        u = u.clamp_(0.0, packed.shape[1] - 1.0)
        index = u.long().reshape(packed.shape[0], -1)
        pairs = torch.gather(packed, 1, index).view(torch.float32).reshape(*u.shape, 2)
        return torch.addcmul(pairs[..., 0], pairs[..., 1], u.frac_())

    def clamp_min_(self, u: Any, lo: float) -> Any:
        return u.clamp_min_(lo)

    def log_(self, u: Any) -> Any:
        return u.log_()

    def mul_out(self, a: Any, b: Any, out: Any) -> None:
        import torch

        torch.mul(a, b, out=out)

    def addcmul_(self, out: Any, a: Any, b: Any) -> None:
        out.addcmul_(a, b)

    def max_over_rows(self, x: Any) -> np.ndarray:
        return x.amax(dim=0).cpu().numpy().astype(np.float64)

    def real_parts(self, z: Any) -> Any:
        import torch

        return torch.view_as_real(z)

    def unit_phase(self, angle: np.ndarray) -> Any:
        import torch

        one = torch.ones((), dtype=torch.float64, device=self.device)
        return torch.polar(one, torch.as_tensor(angle, device=self.device)).to(torch.complex64)

    def ifft(self, z: Any, axis: int) -> Any:
        import torch

        return torch.fft.ifft(z, dim=axis)

    def irfft(self, z: Any, n: int, axis: int) -> Any:
        import torch

        return torch.fft.irfft(z, n=n, dim=axis)

    def sum_f64(self, x: Any, axes: tuple[int, ...]) -> np.ndarray:
        import torch

        return x.sum(dim=axes, dtype=torch.float64).cpu().numpy()

    def numpy(self, x: Any) -> np.ndarray:
        return x.cpu().numpy()

    def no_grad(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        return torch.no_grad()


Backend = NumpyBackend | TorchBackend


def get_backend(device: Any = None, *, tensor: bool = False) -> Backend:
    """numpy for ``device=None`` and a numpy result; torch on ``device`` (default CPU) otherwise.

    Raises
    ------
    LumosValueError
        ``device`` is not a torch device or its name.
    """
    if device is None and not tensor:
        return NumpyBackend()
    import torch

    try:
        return TorchBackend(torch.device("cpu" if device is None else device))
    except (RuntimeError, TypeError):
        raise LumosValueError(f"device must be a torch device or its name, got {device!r}") from None
