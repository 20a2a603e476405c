"""The numpy renderer (the default) and the torch renderer draw the same images."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lumos_ops.render import render_galaxies, render_point_sources
from lumos_ops.render.benchmark import random_profiles


@pytest.mark.parametrize(("seed", "n_max"), [(4, 6.5), (5, 2.0)])
def test_numpy_and_torch_galaxies_agree_to_a_millionth_of_the_peak(seed: int, n_max: float) -> None:
    params = {k: v for k, v in random_profiles(120, seed=seed, n_max=n_max).items() if k != "psf"}
    ours = render_galaxies(**params)
    torch_cpu = render_galaxies(device="cpu", **params)
    assert isinstance(ours.images, np.ndarray)
    peak = torch_cpu.images.max(axis=(1, 2))
    assert np.max(np.abs(ours.images - torch_cpu.images).max(axis=(1, 2)) / peak) < 1e-6
    np.testing.assert_allclose(ours.flux_outside, torch_cpu.flux_outside, atol=1e-6)
    np.testing.assert_array_equal(ours.grid_sizes, torch_cpu.grid_sizes)


@pytest.mark.parametrize("psf", ["moffat", "gaussian"])
def test_numpy_and_torch_point_sources_agree(psf: str) -> None:
    kw = dict(psf_fwhm=[0.5, 0.9, 1.3], psf=psf, dx=[0.1, -0.3, 0.4], dy=[0.2, 0.0, -0.45], flux=[1.0, 2.0, 3.0], size=25)
    ours, torch_cpu = render_point_sources(**kw), render_point_sources(device="cpu", **kw)
    assert np.abs(ours.images - torch_cpu.images).max() < 1e-6 * torch_cpu.images.max()


def test_numpy_rendering_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from lumos_ops.render import render_galaxies\n"
        "r = render_galaxies(r50=[0.4, 0.9], sersic_n=[1.0, 4.0], q=0.6, pa=30.0, psf_fwhm=0.8, size=32)\n"
        "assert r.images.shape == (2, 32, 32)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
