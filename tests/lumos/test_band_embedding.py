"""A base model's band x epoch embedding rebuilt for another survey's bands."""

import pytest
import torch

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.band_embedding import model_bands, survey_embedding
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.survey import BandSpec, Survey

TRAINED = {0, 16, 31, 40, 56, 71}  # NB455, NB615, NB765 at epochs 0 and 1


def test_rows_come_from_the_nearest_trained_band_and_the_band_list_is_recorded(checkpoint):
    base = load_checkpoint(checkpoint, device="cpu")
    before = {k: v.clone() for k, v in base.net.state_dict().items()}
    survey = Survey(name="sdss-gri", bands=(BandSpec("g", 477.0), BandSpec("r", 623.0), BandSpec("i", 763.0)), n_epochs=1)
    net, meta = survey_embedding(base.net, base.metadata, survey, trained_rows=TRAINED)
    bands, n_epochs, _ = model_bands(base.metadata)
    assert (len(bands), n_epochs) == (40, 2) and net.embedding.weight.shape == (3, base.net.config.embedding_dim)
    # g 477 nm: NB475 is nearer but untrained; NB455 is the nearest trained band
    assert meta["embedding_init"] == {"g@0": "NB455@0", "r@0": "NB615@0", "i@0": "NB765@0"}
    for i, band in enumerate(("NB455", "NB615", "NB765")):
        assert torch.equal(net.embedding.weight[i], base.net.embedding.weight[bands.index(band)])
    assert meta["bands"] == ["g", "r", "i"] and meta["n_epochs"] == 1 and meta["band_wavelengths_nm"]["r"] == 623.0
    assert torch.equal(net.head.weight, base.net.head.weight)
    assert all(torch.equal(v, before[k]) for k, v in base.net.state_dict().items())  # the base is untouched
    net.eval()
    out = net(torch.zeros(3, 2, 60, 60), torch.zeros(3, 4), torch.arange(3))
    assert out.mu.shape == (3, base.net.config.n_components)
    every, _ = survey_embedding(base.net, base.metadata, survey)  # every row counts as trained
    assert torch.equal(every.embedding.weight[0], base.net.embedding.weight[bands.index("NB475")])


def test_three_epoch_survey_and_a_base_without_wavelengths(checkpoint):
    base = load_checkpoint(checkpoint, device="cpu")
    survey = Survey(name="x", bands=(BandSpec("NB685", 685.0), BandSpec("z", 900.0)), n_epochs=3)
    net, meta = survey_embedding(base.net, base.metadata, survey, trained_rows=TRAINED | {23, 63})
    assert net.embedding.weight.shape[0] == 6
    assert meta["embedding_init"]["NB685@1"] == "NB685@1" and meta["embedding_init"]["z@2"] == "NB765@1"
    with pytest.raises(LumosValueError, match="no band wavelengths"):
        survey_embedding(base.net, {"bands": ["a", "b"], "n_epochs": 1}, survey)
