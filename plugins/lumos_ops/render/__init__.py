"""Batched galaxy renderer: Sérsic profiles (eq. 1) convolved with a PSF and integrated over pixels.

Rendering happens in Fourier space with torch (CPU or GPU); the accuracy is validated against
GalSim in ``tests/render`` and measured by ``benchmarks/bench_render.py``.
"""

from lumos_ops.render.draw import RenderResult, render_galaxies, render_point_sources
from lumos_ops.render.psf import DEFAULT_MOFFAT_BETA

__all__ = ["DEFAULT_MOFFAT_BETA", "RenderResult", "render_galaxies", "render_point_sources"]
