"""Batched galaxy renderer: Sérsic profiles (eq. 1) convolved with a PSF and integrated over pixels.

``render_galaxies`` / ``render_point_sources`` draw thousands of stamps per call, with numpy and
``scipy.fft`` on the CPU (the default: torch is not imported) or with torch on a CPU or GPU
device; one implementation serves both [``backend``]. The method (modules in brackets):

* the unit-flux circular Sérsic transform, with the exact ``b_n``, is tabulated once per process on
  n = 0.3-6.5 (step 0.02) and ``ln(k r50)`` (step 0.02) by FFTLog Hankel transforms [``sersic``];
  the Moffat transform ``s**(beta-1) K_{beta-1}(s)`` likewise on beta = 1.5-10 [``psf``]; rows are
  interpolated per profile (cubic in n or beta) and per Fourier pixel (linear in ``ln k``) [``tables``];
* each stamp is the inverse FFT of galaxy x PSF x pixel box x sub-pixel shift, folded over the
  nearest aliases, on a periodic grid whose side is chosen per profile so that a bound on the flux
  wrapped into the stamp stays below ``wrap_tolerance`` (default 1e-3) [``grid``, ``fourier``].

Accuracy against GalSim (``tests/render``, ``benchmarks/bench_render.py``): median
``sum|ours - galsim| / flux`` about 1e-4 over r50 0.1-2.5", n 0.3-6.2, q 0.1-1, Moffat and Gaussian PSFs.
"""

from lumos_ops.render.draw import RenderResult, render_galaxies, render_point_sources
from lumos_ops.render.psf import DEFAULT_MOFFAT_BETA

__all__ = ["DEFAULT_MOFFAT_BETA", "RenderResult", "render_galaxies", "render_point_sources"]
