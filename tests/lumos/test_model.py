"""Model registry, architecture shapes and config validation."""

import pytest
import torch

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.config import ModelConfig, Normalization
from lumos_ops.lumos.model import get_model, list_models


def test_registry_names():
    assert {"paper", "fast"} <= set(list_models())
    with pytest.raises(LumosValueError, match="unknown model"):
        get_model("resnet")
    with pytest.raises(LumosValueError, match="invalid override"):
        get_model("fast", nope=1)


def test_paper_architecture_matches_section_4_2():
    cfg = get_model("paper").config
    assert cfg.channels == (2, 32, 64, 128, 64, 32)
    assert cfg.kernels == (9, 7, 5, 3, 2)
    assert cfg.hidden == (2000, 1000, 100)
    assert cfg.n_components == 5 and cfg.n_band_epochs == 80 and cfg.embedding_dim == 10
    assert cfg.block_sides() == (30, 15, 7, 3, 2)


@pytest.mark.parametrize("name", ["paper", "fast"])
def test_forward_shapes_and_constraints(name):
    torch.manual_seed(0)
    net = get_model(name).eval()
    out = net(torch.randn(3, 2, 60, 60), torch.randn(3, 4), torch.tensor([0, 40, 79]))
    assert out.mu.shape == out.sigma.shape == out.log_alpha.shape == (3, 5)
    torch.testing.assert_close(out.log_alpha.exp().sum(1), torch.ones(3))
    assert (out.sigma >= net.config.sigma_floor).all()
    assert net.hidden[0].in_features == net.config.channels[-1] * net.config.feature_side() ** 2 + 4 + 10


def test_config_validation():
    with pytest.raises(LumosValueError, match="kernels"):
        ModelConfig(channels=(2, 4), kernels=(3, 3))
    with pytest.raises(LumosValueError, match="channels"):
        ModelConfig(channels=(3, 4), kernels=(3,))
    with pytest.raises(LumosValueError, match="too small"):
        ModelConfig(stamp_size=8)
    with pytest.raises(LumosValueError, match="pixel_scale"):
        Normalization(pixel_scale=0)
    assert ModelConfig.from_dict(ModelConfig().to_dict()) == ModelConfig()
    assert Normalization.from_dict(Normalization().to_dict()) == Normalization()
