"""The renderer on a CUDA device agrees with the CPU (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lumos_ops.render import render_galaxies
from lumos_ops.render.benchmark import random_profiles


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    params = {k: v for k, v in random_profiles(64, seed=4, n_max=6.5).items() if k != "psf"}
    cpu = render_galaxies(**params)
    gpu = render_galaxies(device="cuda", as_numpy=False, **params)
    assert gpu.images.device.type == "cuda"
    np.testing.assert_allclose(gpu.images.cpu().numpy(), cpu.images, atol=1e-5 * params["flux"].max())
    np.testing.assert_allclose(gpu.flux_outside, cpu.flux_outside, atol=1e-5)
