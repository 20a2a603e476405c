"""Recipes hold valid simulator and training configurations."""

import pytest

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.recipe import RECIPES, run_recipe
from lumos_ops.lumos.train import TrainConfig
from lumos_ops.sim import SurveyConfig, TeahupooConfig


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_configs_are_valid(name):
    recipe = RECIPES[name]
    survey = SurveyConfig.from_dict(dict(recipe.survey))
    TeahupooConfig(**recipe.teahupoo)
    TrainConfig(**recipe.train, ccd_shape=tuple(survey.ccd_shape))


def test_unknown_recipe(tmp_path):
    with pytest.raises(LumosValueError, match="unknown recipe"):
        run_recipe("nope", tmp_path)


def test_default_recipe_is_the_shipped_model():
    import json

    from lumos_ops.lumos.checkpoint import load_checkpoint
    from lumos_ops.lumos.recipe import DEFAULT_RECIPE

    recipe = RECIPES["default"]
    assert recipe is RECIPES[DEFAULT_RECIPE]
    assert recipe.teahupoo["flux_source"] == "reference_prior"  # likelihood training, docs/likelihood.md
    loaded = load_checkpoint(None, device="cpu")
    assert loaded.is_likelihood
    assert loaded.metadata["truncation_imag"] is None
    shipped = loaded.metadata["recipe"]
    assert shipped["name"] == DEFAULT_RECIPE
    plain = json.loads(json.dumps({"survey": recipe.survey, "teahupoo": recipe.teahupoo, "train": recipe.train}))
    assert {k: shipped[k] for k in plain} == plain
