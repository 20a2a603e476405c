"""Fixtures of the LUMOS tests."""

import pytest
import torch

from lumos_ops.lumos.checkpoint import save_checkpoint
from lumos_ops.lumos.model import get_model

from lumos_helpers import NORM, write_training_set


@pytest.fixture(scope="session")
def tiny_training_set(tmp_path_factory):
    return write_training_set(tmp_path_factory.mktemp("teahupoo"))


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A randomly initialised "fast" checkpoint with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    net = get_model("fast")
    with torch.no_grad():
        net.train()
        net(torch.randn(16, 2, 60, 60), torch.randn(16, 4), torch.zeros(16, dtype=torch.long))
    path = tmp_path_factory.mktemp("model") / "m.pt"
    save_checkpoint(path, net, arch="fast", normalization=NORM, metadata={"truncation_imag": 20.5})
    return path
