"""Recipes: run_recipe builds the simulator and training configurations they hold."""

import json

import pytest

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.recipe import RECIPES, run_recipe
from lumos_ops.lumos.train import TrainConfig
from lumos_ops.sim import SurveyConfig, TeahupooConfig


class _Steps:
    """Stand-ins for the survey simulator, the TEAHUPOO generator and the training: they record
    what run_recipe asks for and write the files by which it recognises finished steps. The initial
    model's check is replaced too (the recipes' init models are not files here) unless ``check``."""

    def __init__(self, monkeypatch, *, check=False):
        import lumos_ops.io.catalog
        import lumos_ops.lumos.train
        import lumos_ops.sim

        self.surveys, self.sets, self.trainings, self.workers, self.checked = [], [], [], [], []
        monkeypatch.setattr(lumos_ops.sim, "simulate_survey", self.simulate_survey)
        monkeypatch.setattr(lumos_ops.sim, "generate_training_set", self.generate_training_set)
        monkeypatch.setattr(lumos_ops.lumos.train, "train", self.train)
        monkeypatch.setattr(lumos_ops.io.catalog, "read_catalog", lambda path: f"catalogue {path.name}")
        if not check:
            monkeypatch.setattr(lumos_ops.lumos.train, "check_init_model", self.checked.append)

    def simulate_survey(self, config, out, *, progress, workers):
        self.surveys.append(config)
        self.workers.append(workers)
        (out / "exposures" / "n1").mkdir(parents=True)
        for name in ("b.fits", "a.fits"):
            (out / "exposures" / "n1" / name).write_bytes(b"")
        (out / "manifest.json").write_text("{}")

    def generate_training_set(self, config, paths, catalog, out, *, progress, workers):
        self.sets.append((config, paths, catalog))
        self.workers.append(workers)
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").write_text(json.dumps({"config": config.to_dict()}))

    def train(self, set_dir, model_dir, config, *, resume, metadata):
        self.trainings.append((set_dir, model_dir, config, resume, metadata))
        return {"epochs": config.epochs}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_run_recipe_builds_the_recipe_configs_and_skips_finished_steps(name, tmp_path, monkeypatch):
    recipe = RECIPES[name]
    steps = _Steps(monkeypatch)
    init = {"init_model": "start.pt"} if recipe.init else {}  # the recipe it fine-tunes: next test
    short = {"epochs": 3, "frozen_bn_epochs": min(recipe.train.get("frozen_bn_epochs", 0), 3), **init}
    metrics = run_recipe(name, tmp_path, n_stamps=64, train_options=short, progress=False, workers=3)

    survey = SurveyConfig.from_dict(dict(recipe.survey))
    assert steps.surveys == [survey]
    assert steps.workers == [3, 3]
    set_config, paths, catalog = steps.sets[0]
    assert set_config == TeahupooConfig(**{**recipe.teahupoo, "n_stamps": 64})
    assert paths == [str(tmp_path / "survey" / "exposures" / "n1" / f) for f in ("a.fits", "b.fits")]
    assert catalog == "catalogue catalog.parquet"
    set_dir, model_dir, config, resume, metadata = steps.trainings[0]
    assert (set_dir, model_dir, resume) == (tmp_path / "teahupoo", tmp_path / "model", False)
    assert config == TrainConfig(**{**recipe.train, **short}, ccd_shape=tuple(survey.ccd_shape), progress=False)
    assert metadata["recipe"] == {"name": name, "survey": recipe.survey, "teahupoo": {**recipe.teahupoo, "n_stamps": 64},
                                  "train": recipe.train, **({"init": recipe.init} if recipe.init else {})}
    assert metrics == {"epochs": 3}
    assert steps.checked == [config]

    run_recipe(name, tmp_path, n_stamps=64, resume=True, train_options=init, progress=False)  # survey and stamps are done
    assert len(steps.surveys) == 1 and len(steps.sets) == 1
    assert steps.trainings[1][3] is True and steps.trainings[1][2].epochs == recipe.train["epochs"]
    run_recipe(name, tmp_path, n_stamps=32, train_options=init, progress=False)  # another set configuration: new stamps
    assert len(steps.surveys) == 1 and [s[0].n_stamps for s in steps.sets] == [64, 32]


@pytest.mark.parametrize("name", sorted(n for n, r in RECIPES.items() if r.init))
def test_a_fine_tuning_recipe_first_trains_the_recipe_it_starts_from(name, tmp_path, monkeypatch):
    """Every recipe of the chain (the recipe it starts from, that one's, ...) is trained first, each
    in OUT/init-<name> of the one it serves, and hands its model to the next."""
    chain = [name]
    while RECIPES[chain[-1]].init:
        chain.append(RECIPES[chain[-1]].init)
    chain.reverse()  # the first recipe trained first
    outs = [tmp_path]
    for base in reversed(chain[:-1]):
        outs.append(outs[-1] / f"init-{base}")
    outs.reverse()  # the output folder of each recipe of the chain
    steps = _Steps(monkeypatch)
    run_recipe(name, tmp_path, progress=False)
    # a survey is simulated once per distinct survey configuration along the chain
    surveys = [RECIPES[r].survey for r in chain]
    assert len(steps.surveys) == 1 + sum(a != b for a, b in zip(surveys, surveys[1:]))
    assert [s[0] for s in steps.sets] == [TeahupooConfig(**RECIPES[r].teahupoo) for r in chain]
    if len(steps.surveys) == 1:  # one survey, simulated in OUT/survey and cut by every recipe of the chain
        assert all(paths[0].startswith(str(tmp_path / "survey")) for _, paths, _ in steps.sets)
    assert len(steps.trainings) == len(chain)
    for k, (recipe_name, out, (set_dir, model_dir, config, _, meta)) in enumerate(zip(chain, outs, steps.trainings)):
        assert (set_dir, model_dir) == (out / "teahupoo", out / "model")
        assert meta["recipe"]["name"] == recipe_name
        if k == 0:
            assert config.init_model is None
        else:
            assert config.init_model == str(outs[k - 1] / "model" / "model.pt")
            assert meta["recipe"]["init"] == chain[k - 1]


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


def test_cli_init_model_starts_the_recipe_from_that_checkpoint(tmp_path, monkeypatch, capsys):
    """``lumos train --recipe NAME --init-model MODEL``: the recipe it fine-tunes is not trained; the
    training starts from MODEL (a shipped name resolves to its file)."""
    import lumos_ops.lumos.train
    from lumos_ops.cli import main
    from lumos_ops.lumos.checkpoint import resolve_model_path

    steps = _Steps(monkeypatch)
    configs = []

    def train(set_dir, model_dir, config, *, resume, metadata):
        configs.append(config)
        return {"val_loss": 1.0, "model_sha256": "ab" * 32,
                "validation": {"bias": 0.0, "sigma68": 0.1, "coverage68": 0.68}}

    monkeypatch.setattr(lumos_ops.lumos.train, "train", train)
    name, start = "fast-mf-noccd-v15-ft", "fast-noccd"
    assert main(["train", "--recipe", name, "--init-model", start, "--out", str(tmp_path), "-q"]) == 0
    assert len(steps.surveys) == 1 and len(configs) == 1
    assert configs[0].init_model == str(resolve_model_path(start))
    assert not (tmp_path / f"init-{RECIPES[name].init}").exists()
    assert str(tmp_path / "model" / "model.pt") in capsys.readouterr().out


def test_cli_init_model_needs_a_recipe(tmp_path, capsys):
    from lumos_ops.cli import main

    assert main(["train", "--training-set", str(tmp_path), "--init-model", "default", "--out", str(tmp_path / "o")]) == 2
    assert "--init-model starts a fine-tuning --recipe" in capsys.readouterr().err


def _checkpoint(path, arch, n_band_epochs):
    """A freshly initialised ``arch`` checkpoint with ``n_band_epochs`` embedding rows at ``path``."""
    from lumos_ops.lumos.checkpoint import save_checkpoint
    from lumos_ops.lumos.model import get_model

    from lumos_helpers import NORM

    net = get_model(arch, n_band_epochs=n_band_epochs)
    net.bind_normalization(NORM)
    save_checkpoint(path, net, arch=arch, normalization=NORM)
    return path


@pytest.mark.parametrize(("arch", "rows", "message"), [
    ("fast", 80, "init_model arch 'fast' differs from 'fast-mf'"),
    ("fast-mf", 3, "init_model n_band_epochs 3 differs from this training's 80"),
])
def test_recipe_init_model_is_checked_before_anything_is_simulated(arch, rows, message, tmp_path, monkeypatch):
    """``--init-model`` of another architecture, or of other band x epoch rows than the recipe's
    training set (the 40 PAUS bands x 2 epochs), is refused before the survey is simulated."""
    steps = _Steps(monkeypatch, check=True)
    start = _checkpoint(tmp_path / "start.pt", arch, rows)
    with pytest.raises(LumosValueError, match=message):
        run_recipe("default", tmp_path / "out", train_options={"init_model": str(start)}, progress=False)
    assert steps.surveys == [] and steps.sets == [] and steps.trainings == []
    assert not (tmp_path / "out" / "survey").exists()


def test_recipe_accepts_a_matching_init_model(tmp_path, monkeypatch):
    steps = _Steps(monkeypatch, check=True)
    start = _checkpoint(tmp_path / "start.pt", "fast-mf", 80)
    run_recipe("default", tmp_path / "out", n_stamps=8, train_options={"init_model": str(start)}, progress=False)
    assert len(steps.surveys) == 1 and steps.trainings[0][2].init_model == str(start)
