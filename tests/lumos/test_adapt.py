"""``lumos_ops.lumos.adapt``: seeded split by exposure, resumable fine-tuning, the injection report."""

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits

from lumos_ops.constants import DEFAULT_NEIGHBOUR_ERROR_FLOOR
from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.io.training_set import TrainingSet
from lumos_ops.lumos import adapt as adapt_module
from lumos_ops.lumos.adapt import AdaptConfig, adapt, find_exposures, split_exposures
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.lumos.shared_error import SharedError
from lumos_ops.survey import load_survey, paus_survey, use_survey


def write_exposure(path, *, band, expnum, seed, shape=(150, 170), noise_adu=25.0, zero_point=None):
    """A noise frame (ADU, sky 600) with three stars, following the header contract."""
    rng = np.random.default_rng(seed)
    data = rng.normal(600.0, noise_adu, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for x, y in rng.uniform(20, min(shape) - 20, (3, 2)):
        data += 4e4 * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 1.4**2) / (2 * np.pi * 1.4**2)
    header = fits.Header({"FILTER": band, "EXPTIME": 90.0, "GAIN": 1.0, "PSFFWHM": 0.9, "EXPNUM": expnum, "CCDNUM": 1})
    if zero_point is not None:
        header["ZP"] = zero_point
    fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(path)
    return str(path)


def catalogue(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"ref_id": np.arange(n), "x": rng.uniform(10, 150, n), "y": rng.uniform(10, 130, n),
                         "r50": rng.uniform(0.2, 0.9, n), "sersic_n": rng.uniform(0.8, 3.0, n),
                         "q": rng.uniform(0.4, 1.0, n), "pa": rng.uniform(0, 180, n), "i_auto": rng.uniform(19, 23, n)})


@pytest.fixture(scope="module")
def exposures(tmp_path_factory):
    root = tmp_path_factory.mktemp("exposures")
    paths = []
    for k in range(3):
        paths.append(write_exposure(root / f"r_{k}.fits", band="NB615", expnum=100 + k, seed=k))
        paths.append(write_exposure(root / f"i_{k}.fits", band="NB765", expnum=200 + k, seed=10 + k))
    return root, paths


def test_split_is_seeded_disjoint_by_exposure_and_band(tmp_path):
    paths = []
    for k in range(4):  # band NB615: exposure 1 has two CCD files, which must stay together
        paths.append(write_exposure(tmp_path / f"a{k}.fits", band="NB615", expnum=k, seed=k, shape=(40, 40)))
    paths.append(write_exposure(tmp_path / "a0_ccd2.fits", band="NB615", expnum=1, seed=9, shape=(40, 40)))
    for k in range(5):
        paths.append(write_exposure(tmp_path / f"b{k}.fits", band="NB765", expnum=10 + k, seed=k, shape=(40, 40)))
    train, held = split_exposures(paths, holdout=0.4, seed=3)
    assert set(train).isdisjoint(held) and sorted(train + held) == sorted(paths)
    assert (train, held) == split_exposures(list(reversed(paths)), holdout=0.4, seed=3)
    bands = {p: fits.getheader(p)["FILTER"] for p in paths}
    assert {bands[p] for p in held} == {"NB615", "NB765"} and {bands[p] for p in train} == {"NB615", "NB765"}
    together = {str(tmp_path / "a1.fits"), str(tmp_path / "a0_ccd2.fits")}
    assert together <= set(train) or together <= set(held)
    splits = {tuple(split_exposures(paths, holdout=0.4, seed=s)[1]) for s in range(8)}
    assert len(splits) > 1
    with pytest.raises(LumosValueError, match="single exposure"):
        split_exposures(paths[:1], holdout=0.5, seed=0)


def test_the_split_keeps_a_paus_exposures_ccds_together_across_bands(tmp_path):
    """A PAUS exposure puts another band on each CCD: its CCD files are held out or kept whole."""
    paths = [write_exposure(tmp_path / f"e{e}_ccd{c}.fits", band=band, expnum=e, seed=10 * e + c, shape=(40, 40))
             for e in range(5) for c, band in enumerate(("NB615", "NB685", "NB765"))]
    for seed in range(6):
        train, held = split_exposures(paths, holdout=0.4, seed=seed)
        assert sorted(train + held) == sorted(paths) and held
        held_exposures = {fits.getheader(p)["EXPNUM"] for p in held}
        assert held_exposures.isdisjoint(fits.getheader(p)["EXPNUM"] for p in train)
        assert len(held_exposures) == 2  # round(0.4 x 5): every band reaches its share through the first one's


def test_find_exposures_directory_glob_and_nothing(exposures, tmp_path):
    root, paths = exposures
    assert find_exposures(root) == sorted(paths)
    assert find_exposures(str(root / "r_*.fits")) == sorted(p for p in paths if "/r_" in p)
    with pytest.raises(InputFileError, match="no FITS exposure"):
        find_exposures(str(tmp_path / "none" / "*.fits"))


class Interrupt(Exception):
    pass


def small_config(**changes):
    values = dict(holdout=0.34, n_stamps=120, val_fraction=0.25, epochs=2, batch_size=32, n_galaxies=12, n_place=2,
                  populations=("sersic",), classical_methods=("aperture", "optimal"), snr_range=(5.0, 100.0),
                  spacing=24, min_clearance=4.0, seed=1, device="cpu", progress=False, psf_profile="kolmogorov",
                  training_psf="model")
    values.update(changes)
    return AdaptConfig(**values)


@pytest.mark.slow
def test_adapt_resumes_and_writes_model_and_report(exposures, tmp_path, monkeypatch):
    root, paths = exposures
    # the term pooled with knots (not the default), which are injected for the candidate alone
    config = small_config(lr_step=1, shared_error_populations=("sersic", "knots"))
    batches = adapt_module._batches

    def interrupted(dataset, batch_size, seed):
        if seed == config.seed * 100_003 + 1:  # the second epoch's shuffle: stop there
            raise Interrupt
        return batches(dataset, batch_size, seed)

    out = tmp_path / "run"
    monkeypatch.setattr(adapt_module, "_batches", interrupted)
    with pytest.raises(Interrupt):
        adapt(root, catalogue(), out, config)
    monkeypatch.undo()
    state = torch.load(out / "train" / "train_state.pt", weights_only=True)
    assert state["epoch"] == 1 and not (out / "model.pt").exists()
    manifest_mtime = (out / "teahupoo" / "manifest.json").stat().st_mtime_ns
    result = adapt(root, catalogue(), out, config)
    assert (out / "teahupoo" / "manifest.json").stat().st_mtime_ns == manifest_mtime  # training set kept
    # the training backgrounds are cut where the injection would place a galaxy
    assert json.loads((out / "teahupoo" / "manifest.json").read_text())["config"]["target_clearance"] == 4.0
    history = json.loads((out / "train" / "done.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2] and history[1] == state["history"][1]
    assert [h["lr"] for h in history[1:]] == pytest.approx([config.lr, config.lr * config.lr_gamma])

    # an uninterrupted run of the same configuration gives the same weights
    fresh = tmp_path / "fresh"

    def stop(*args, **kwargs):
        raise Interrupt

    monkeypatch.setattr(adapt_module, "_stage_error_floor", stop)
    with pytest.raises(Interrupt):
        adapt(root, catalogue(), fresh, config)
    monkeypatch.undo()
    assert json.loads((fresh / "train" / "done.json").read_text())["sha256"] == result.model_sha256
    # balanced loss weights by default, recorded in the candidate
    assert load_checkpoint(result.model_path, device="cpu").metadata["adapt"]["config"]["balanced_weights"] is True

    # outputs
    split = json.loads((out / "split.json").read_text())
    assert set(split["train"]).isdisjoint(split["heldout"]) and result.heldout_exposures == split["heldout"]
    model = load_checkpoint(result.model_path, device="cpu")
    assert model.sha256 == result.model_sha256 and model.is_likelihood
    assert model.metadata["adapt"]["train_exposures"] == split["train"]
    assert {16, 31} <= set(model.metadata["trained_band_epochs"])  # NB615 and NB765 rows (epoch 0)
    lo, hi = model.trained_psf_fwhm_px  # the training exposures' PSFs, not the base model's recipe survey
    assert model.metadata["psf_fwhm_px_range"] == [lo, hi] and 0 < lo <= hi
    assert result.plot_path.is_file() and result.plot_path.stat().st_size > 1000
    report = json.loads(result.report_path.read_text())
    assert report["adapt"]["model_sha256"] == result.model_sha256 and report["adapt"]["heldout_exposures"] == split["heldout"]
    # the shared error measured on the held-out injection is what the candidate's co-adds will use
    shared = SharedError.from_dict(model.metadata["shared_error"])
    assert model.metadata["shared_error"] == report["adapt"]["shared_error"]
    assert "held-out injection (knots, sersic)" in shared.source and len(shared.rho) == len(shared.snr_edges) - 1
    # the optimal fits of the same placements (the base model's run; the knots' own) give the residual axis
    assert shared.residual_cuts == (0.01,) and len(shared.rho_by_residual) == 2
    # every galaxy of both populations with placements on two held-out exposures counts
    spread = {p: int((pd.read_parquet(out / "injection" / f"{p}-candidate.parquet").groupby("galaxy")["frame"]
                      .nunique() > 1).sum()) for p in ("sersic", "knots")}
    assert sum(shared.n_galaxies) == sum(spread.values())
    # the knots only measure the term: injected for the candidate alone, and not in the report
    assert (out / "injection" / "knots-candidate.parquet").is_file()
    assert not (out / "injection" / "knots-base.parquet").exists() and set(report["populations"]) == {"sersic"}

    # the error floors: too few bright rows on these small training frames keep the survey's, and say so
    floors = json.loads((out / "error_floor.json").read_text())
    assert report["adapt"]["error_floor"] == floors and floors["flux"]["n"] < 30
    assert floors["flux_error_floor"] == floors["survey_floors"]["flux_error_floor"] == 0.011
    assert load_survey(out / "survey.json").flux_error_floor == 0.011
    assert set(pd.read_parquet(out / "floor" / f"sersic-{result.model_sha256[:16]}-snr50-150.parquet")["frame"]) \
        <= set(split["train"])

    # per-band fixed-truth metrics for the candidate, the base model and the classical methods
    metrics = {"bias", "sigma68", "pull_sigma68", "coverage68"}
    methods = report["populations"]["sersic"]["methods"]
    assert set(methods) == {"aperture", "optimal", "lumos"}
    assert report["base"]["populations"]["sersic"]["lumos"]["n"] > 0
    assert set(report["bands"]) == {"NB615", "NB765"}
    for band, entry in report["bands"].items():
        assert all(band == fits.getheader(f)["FILTER"] for f in entry["frames"])
        cand = entry["candidate"]["populations"]["sersic"]["methods"]
        assert set(cand) == {"aperture", "optimal", "lumos"}
        every = [b for b in cand["lumos"]["by_true_snr"] if b["lo"] is None][0]
        assert metrics <= set(every) and every["n"] > 0
        assert entry["base"]["populations"]["sersic"]["lumos"]["by_true_snr"]
    scopes = {(r["scope"], r["method"]) for r in report["comparison"]}
    for scope in ("all", "NB615", "NB765"):
        assert {(scope, m) for m in ("lumos_base", "lumos_candidate", "aperture", "optimal")} <= scopes
    assert {t["target"] for t in report["targets"]} == {t["target"] for t in report["base"]["targets"]}

    # the base model and the candidate measured the same injected galaxies
    base = pd.read_parquet(out / "injection" / "sersic-base.parquet")
    cand = pd.read_parquet(out / "injection" / "sersic-candidate.parquet")
    truth = ["placement", "frame", "x", "y", "true_flux"]
    pd.testing.assert_frame_equal(base[base["method"] == "lumos"][truth].reset_index(drop=True),
                                  cand[truth].reset_index(drop=True))


def test_a_rerun_with_other_inputs_is_refused(exposures, tmp_path):
    root, paths = exposures
    out = tmp_path / "run"
    (out).mkdir()
    (out / "split.json").write_text(json.dumps({"exposures": paths[:2], "seed": 1, "holdout": 0.34,
                                                "train": paths[:1], "heldout": paths[1:2]}))
    with pytest.raises(LumosValueError, match="other exposures"):
        adapt(root, catalogue(), out, small_config())


def test_config_is_validated():
    with pytest.raises(LumosValueError, match="holdout"):
        AdaptConfig(holdout=1.0)
    with pytest.raises(LumosValueError, match="train_layers"):
        AdaptConfig(train_layers="some")
    with pytest.raises(LumosValueError, match="classical_methods"):
        AdaptConfig(classical_methods=("lumos",))
    with pytest.raises(LumosValueError, match="unknown fields"):
        AdaptConfig(truth_mismatch={"knots": 0.3})
    with pytest.raises(LumosValueError, match="knot_fraction"):
        AdaptConfig(truth_mismatch={"knot_fraction": 2.0})
    with pytest.raises(LumosValueError, match=r"shared_error_populations must be some of .*got \['disks'\]"):
        AdaptConfig(shared_error_populations=("disks",))
    with pytest.raises(LumosValueError, match="shared_error_populations"):
        AdaptConfig(shared_error_populations=())
    with pytest.raises(LumosValueError, match=r"psf_profile must be one of \('kolmogorov', 'moffat', 'stars'\)"):
        AdaptConfig(psf_profile="airy")
    with pytest.raises(LumosValueError, match=r"training_psf must be one of \('model', 'stars'\), got 'piff'"):
        AdaptConfig(training_psf="piff")
    with pytest.raises(LumosValueError, match="set training_psf='model' with it"):
        AdaptConfig(training_psf="stars", truth_mismatch={"knot_fraction": 0.2})
    assert AdaptConfig().psf_profile == "stars" and AdaptConfig().training_psf == "stars"
    assert AdaptConfig().shared_error_populations == ("sersic",)


def test_training_psf_reaches_the_teahupoo_set(tmp_path, monkeypatch):
    """``training_psf`` becomes the training set's ``truth_psf``; the default leaves it out of the set's config."""
    seen = []
    monkeypatch.setattr("lumos_ops.sim.generate_training_set", lambda config, *a, **k: seen.append(config))
    base = SimpleNamespace(flux_prior=None, net=SimpleNamespace(config=SimpleNamespace(stamp_size=40)))
    noise = adapt_module.NoiseScale(base_noise=1.0, survey_noise=1.0, factor=1.0, by_band={}, exposures={})
    for option in ("model", "stars"):
        adapt_module._stage_training_set(tmp_path / option, ["x.fits"], catalogue(), base,
                                   AdaptConfig(training_psf=option, n_stamps=10), noise)
    assert [c.truth_psf for c in seen] == ["model", "stars"]
    assert "truth_psf" not in seen[0].to_dict() and seen[1].to_dict()["truth_psf"] == "stars"


def _train_only(root, out, config: AdaptConfig, monkeypatch) -> None:
    """Run ``adapt`` up to its trained candidate (``out/model.pt``), stopping before the injections."""

    def stop(*args, **kwargs):
        raise Interrupt

    monkeypatch.setattr(adapt_module, "_stage_error_floor", stop)
    with pytest.raises(Interrupt):
        adapt(root, catalogue(), out, config)
    monkeypatch.undo()


@pytest.mark.slow
def test_adapt_trains_on_galaxies_that_differ_from_their_model(exposures, tmp_path, monkeypatch):
    from lumos_ops.sim.truth_mismatch import TRUTH_MISMATCH

    _train_only(exposures[0], tmp_path / "run", small_config(epochs=1, truth_mismatch=dict(TRUTH_MISMATCH)),
                monkeypatch)
    recorded = json.loads((tmp_path / "run" / "teahupoo" / "manifest.json").read_text())["config"]
    assert recorded["knot_fraction"] == TRUTH_MISMATCH["knot_fraction"]
    assert recorded["truth_psf_beta_range"] == list(TRUTH_MISMATCH["truth_psf_beta_range"])
    meta = TrainingSet(tmp_path / "run" / "teahupoo").meta
    assert meta["truth_psf_beta"].between(*TRUTH_MISMATCH["truth_psf_beta_range"]).all()
    assert (meta["knot_flux_frac"] > 0).any() and (tmp_path / "run" / "model.pt").is_file()


@pytest.mark.slow
def test_adapt_to_a_survey_with_other_bands(tmp_path):
    from lumos_ops.survey import BandSpec, Survey

    survey = Survey(name="gr", bands=(BandSpec("g", 477.0), BandSpec("r", 623.0)), n_epochs=1, pixel_scale=0.396,
                    source="test-survey")
    root = tmp_path / "exposures"
    root.mkdir()
    for k in range(2):
        write_exposure(root / f"g_{k}.fits", band="g", expnum=10 + k, seed=k, zero_point=25.0)
        write_exposure(root / f"r_{k}.fits", band="r", expnum=20 + k, seed=5 + k, zero_point=25.0)
    config = small_config(holdout=0.5, epochs=1, n_galaxies=30)  # > one frame realisation: both bands measured
    result = adapt(root, catalogue(), tmp_path / "out", config, survey=survey)
    model = load_checkpoint(result.model_path, device="cpu")
    assert model.metadata["bands"] == ["g", "r"] and model.metadata["n_epochs"] == 1
    init = model.metadata["embedding_init"]  # from the base model's nearest trained narrow band
    assert set(init) == {"g@0", "r@0"} and abs(int(init["g@0"][2:5]) - 477) <= 25 and abs(int(init["r@0"][2:5]) - 623) <= 25
    assert model.net.embedding.weight.shape[0] == 2 and sorted(model.metadata["trained_band_epochs"]) == [0, 1]
    assert set(result.report["bands"]) == {"g", "r"}
    table = pd.read_parquet(tmp_path / "out" / "injection" / "sersic-candidate.parquet")
    assert len(table) > 0 and (table["flag"] & 512 == 0).all()  # the candidate knows g and r: no UNTRAINED_BAND
    base = pd.read_parquet(tmp_path / "out" / "injection" / "sersic-base.parquet")
    assert (base.loc[base["method"] == "lumos", "flag"] & 512 != 0).all()  # the PAUS model does not


@pytest.mark.slow
def test_adapt_may_fine_tune_another_stamp_background(exposures, tmp_path, monkeypatch):
    root, _ = exposures
    _train_only(root, tmp_path / "run", small_config(epochs=1), monkeypatch)
    norm = load_checkpoint(tmp_path / "run" / "model.pt", device="cpu").normalization
    assert norm.stamp_background == "masked_annulus"  # the default
    # the magnitudes the candidate was fine-tuned on: the survey catalogue's, not the base model's
    ts = TrainingSet(tmp_path / "run" / "teahupoo")
    i_auto = ts.meta["i_auto"].to_numpy()[ts.indices("train")]
    assert norm.imag_range == (i_auto.min(), i_auto.max())
    # the shipped base subtracts the masked annulus too: fine-tune it to the stamp median instead
    assert load_checkpoint(None, device="cpu").normalization.stamp_background == "masked_annulus"
    _train_only(root, tmp_path / "median", small_config(epochs=1, stamp_background="median"), monkeypatch)
    assert load_checkpoint(tmp_path / "median" / "model.pt", device="cpu").normalization.stamp_background == "median"
    with pytest.raises(LumosValueError, match="stamp_background"):
        small_config(stamp_background="mode")


def _fake_injection(floor: float, calls: list, neighbour_floor: float = 0.0, classical_floor: float | None = None,
                    classical_neighbour_floor: float | None = None):
    """A stand-in for ``run_injection``: rows of each method asked for whose bright fluxes carry a
    fractional error (``floor`` for LUMOS, ``classical_floor`` for the others, default ``floor``)
    besides their statistical error (1 % of the flux), on the exposures it is given; blended rows
    have a fitted neighbour of half their flux, whose light adds an error ``neighbour_floor`` of it
    (``classical_neighbour_floor`` for the classical methods, default ``neighbour_floor``)."""

    def run(frames, config, *, methods, model, keep_headers, shapes, work_dir, aperture_fallback=None):
        calls.append((config.population, list(frames), config.seed, config.snr_range))
        from lumos_ops.survey import current_survey

        survey = current_survey()  # the floors the rows are measured with, as measure_exposure records them
        parts = []
        for k, method in enumerate(methods):
            rng = np.random.default_rng([config.seed, k])
            n = 400
            true = np.exp(rng.uniform(np.log(1e3), np.log(1e4), n))
            stat = 0.01 * true
            light = 0.5 * true if config.population == "blended" else np.zeros(n)
            extra = floor if method == "lumos" or classical_floor is None else classical_floor
            near = (neighbour_floor if method == "lumos" or classical_neighbour_floor is None
                    else classical_neighbour_floor)
            flux = (true + stat * rng.standard_normal(n) + extra * true * rng.standard_normal(n)
                    + near * light * rng.standard_normal(n))
            parts.append(pd.DataFrame({"method": method, "frame": frames[0], "flux": flux, "flux_err": stat,
                                       "flux_err_stat": stat, "true_flux": true, "neighbour_light": light,
                                       "error_floor": survey.error_floor_for(method),
                                       "neighbour_error_floor": survey.neighbour_error_floor_for(method),
                                       "psf_profile": config.psf_profile,
                                       **({"flux_correction": 1.0} if survey.psf_flux_correction else {})}))
        return pd.concat(parts, ignore_index=True)

    return run


def test_error_floor_is_measured_on_training_exposures_and_written_as_a_survey(tmp_path, monkeypatch):
    from lumos_ops.evaluation import injection

    calls = []
    monkeypatch.setattr(injection, "run_injection", _fake_injection(0.03, calls, classical_floor=0.06))
    config = small_config()
    train = ["/data/train_0.fits", "/data/train_1.fits"]
    model = tmp_path / "model.pt"
    record = adapt_module._stage_error_floor(tmp_path, train, catalogue(), model, "ab" * 32, config, paus_survey())
    assert calls == [("sersic", train, config.seed * 1000 + 500, config.floor_snr_range)]
    # 1 % statistical and 3 % extra: the rows ask for about 3 %
    assert record["measured"] and 0.024 < record["flux_error_floor"] < 0.036
    assert record["flux"]["pull_before"] > 2.0 and record["flux"]["pull_after"] == pytest.approx(1.0, abs=0.01)
    assert record["survey_floors"] == {"flux_error_floor": 0.011, "neighbour_error_floor": DEFAULT_NEIGHBOUR_ERROR_FLOOR,
                                       "method_error_floors": {}}
    assert record["neighbour"] is None and record["neighbour_error_floor"] == DEFAULT_NEIGHBOUR_ERROR_FLOOR  # no blended pairs asked for
    # each classical method measured on the same galaxies asks for its own (6 %)
    assert record["measured_methods"] == ["lumos", "aperture", "optimal"]
    assert set(record["method_error_floors"]) == {"aperture", "optimal"}
    assert all(0.05 < v < 0.07 for v in record["method_error_floors"].values())
    written = load_survey(tmp_path / "survey.json")
    assert written.flux_error_floor == record["flux_error_floor"] and written.band_names == paus_survey().band_names
    assert written.method_error_floors == record["method_error_floors"]
    assert written.error_floor_for("optimal") == record["method_error_floors"]["optimal"]
    assert written.error_floor_for("lumos") == record["flux_error_floor"]
    # kept on a rerun with the same candidate; measured again for another one
    again = adapt_module._stage_error_floor(tmp_path, train, catalogue(), model, "ab" * 32, config, paus_survey())
    assert again == json.loads((tmp_path / "error_floor.json").read_text()) and len(calls) == 1
    # a record and table of an earlier revision of the measurement are measured again
    saved = json.loads((tmp_path / "error_floor.json").read_text())
    assert saved["measurement_revision"] == injection.MEASUREMENT_REVISION
    (tmp_path / "error_floor.json").write_text(json.dumps({**saved, "measurement_revision": 0}))
    cached = tmp_path / "floor" / f"sersic-{'ab' * 8}-snr50-150.parquet"
    pd.read_parquet(cached).assign(measurement_revision=0).to_parquet(cached, index=False)
    adapt_module._stage_error_floor(tmp_path, train, catalogue(), model, "ab" * 32, config, paus_survey())
    assert len(calls) == 2
    adapt_module._stage_error_floor(tmp_path, train, catalogue(), model, "ab" * 32, config, paus_survey())
    assert len(calls) == 2  # kept again
    calls.pop()
    adapt_module._stage_error_floor(tmp_path, train, catalogue(), model, "cd" * 32, config, paus_survey())
    assert len(calls) == 2
    # switched off: the survey's floors, nothing injected
    off = adapt_module._stage_error_floor(tmp_path / "off", train, catalogue(), model, "ab" * 32,
                                          small_config(measure_error_floor=False), paus_survey())
    assert off["flux_error_floor"] == 0.011 and not off["measured"] and len(calls) == 2


def test_the_floor_injection_draws_bright_galaxies_and_follows_its_range(tmp_path, monkeypatch):
    """The floor is read from rows at measured SNR >= 50: its galaxies are drawn at true SNR
    ``floor_snr_range`` (the held-out injection keeps ``snr_range``), and another range injects again."""
    from lumos_ops.evaluation import injection

    calls = []
    monkeypatch.setattr(injection, "run_injection", _fake_injection(0.03, calls))
    config = small_config(shared_error_populations=("sersic",))
    assert AdaptConfig().floor_snr_range == (50.0, 150.0) and config.snr_range == (5.0, 100.0)

    def floor(cfg):
        return adapt_module._stage_error_floor(tmp_path, ["/data/t.fits"], catalogue(), tmp_path / "m.pt", "ab" * 32,
                                               cfg, paus_survey())

    assert floor(config)["floor_snr_range"] == [50.0, 150.0] and calls[-1][3] == (50.0, 150.0)
    floor(config)
    assert len(calls) == 1  # kept
    assert floor(dataclasses.replace(config, floor_snr_range=(30.0, 300.0)))["floor_snr_range"] == [30.0, 300.0]
    assert len(calls) == 2 and calls[-1][3] == (30.0, 300.0)
    assert (tmp_path / "floor" / f"sersic-{'ab' * 8}-snr30-300.parquet").is_file()
    floors = {"flux_error_floor": 0.03, "neighbour_error_floor": DEFAULT_NEIGHBOUR_ERROR_FLOOR}
    adapt_module._stage_injection(tmp_path, ["/data/held.fits"], catalogue(), "base.pt", tmp_path / "m.pt", config,
                                  floors)
    assert {c[3] for c in calls[2:]} == {(5.0, 100.0)}
    for bad in ((50.0,), (0.0, 10.0), (100.0, 50.0)):
        with pytest.raises(LumosValueError, match="floor_snr_range must be two true SNRs"):
            small_config(floor_snr_range=bad)


def test_error_floor_of_blended_pairs_is_the_neighbour_floor(tmp_path, monkeypatch):
    from lumos_ops.evaluation import injection

    calls = []
    monkeypatch.setattr(injection, "run_injection", _fake_injection(0.02, calls, neighbour_floor=0.08,
                                                                    classical_neighbour_floor=0.03))
    config = small_config(populations=("sersic", "blended"))
    record = adapt_module._stage_error_floor(tmp_path, ["/data/t.fits"], catalogue(), tmp_path / "m.pt", "ef" * 32,
                                             config, paus_survey())
    assert [c[0] for c in calls] == ["sersic", "blended"] and calls[1][2] == config.seed * 1000 + 501
    assert 0.015 < record["flux_error_floor"] < 0.025
    # the neighbour's error is 8 % of its light, measured at the flux floor found on the Sérsic rows
    assert 0.06 < record["neighbour_error_floor"] < 0.10 and record["neighbour"]["pull_after"] == pytest.approx(1.0, abs=0.01)
    written = load_survey(tmp_path / "survey.json")
    assert written.neighbour_error_floor == record["neighbour_error_floor"]
    # each classical method reads its neighbours' residual through its own weights: 3 % of the light here
    assert set(record["method_neighbour_error_floors"]) == {"aperture", "optimal"}
    assert all(0.02 < v < 0.04 for v in record["method_neighbour_error_floors"].values())
    assert record["neighbour_methods"]["optimal"]["pull_after"] == pytest.approx(1.0, abs=0.01)
    assert written.method_neighbour_error_floors == record["method_neighbour_error_floors"]
    assert written.neighbour_error_floor_for("lumos") == record["neighbour_error_floor"]
    assert written.neighbour_error_floor_for("optimal") == record["method_neighbour_error_floors"]["optimal"]


def test_held_out_tables_measured_with_other_floors_are_measured_again(tmp_path, monkeypatch):
    from lumos_ops.evaluation import injection

    calls = []
    monkeypatch.setattr(injection, "run_injection", _fake_injection(0.0, calls))
    config = small_config(shared_error_populations=("sersic",))
    held = ["/data/held.fits"]

    def measure(floor):
        floors = {"flux_error_floor": floor, "neighbour_error_floor": DEFAULT_NEIGHBOUR_ERROR_FLOOR}
        with use_survey(dataclasses.replace(paus_survey(), flux_error_floor=floor)):  # as adapt runs the stage
            return adapt_module._stage_injection(tmp_path, held, catalogue(), "base.pt", tmp_path / "model.pt",
                                                 config, floors)

    measure(0.011)
    assert len(calls) == 2  # base and candidate
    measure(0.011)
    assert len(calls) == 2  # cached
    # a table measured at an earlier revision of the measurement (no column) is measured again
    cached = tmp_path / "injection" / "sersic-base.parquet"
    pd.read_parquet(cached).drop(columns="measurement_revision").to_parquet(cached, index=False)
    measure(0.011)
    assert len(calls) == 3 and "measurement_revision" in pd.read_parquet(cached)
    calls.pop()
    table = measure(0.02)
    assert len(calls) == 4 and set(table["error_floor"]) == {0.02}
    assert set(pd.read_parquet(tmp_path / "injection" / "sersic-candidate.parquet")["error_floor"]) == {0.02}
    # a classical method's own floor: the base table (which holds it) is measured again, the candidate's kept
    floors = {"flux_error_floor": 0.02, "neighbour_error_floor": DEFAULT_NEIGHBOUR_ERROR_FLOOR, "method_error_floors": {"aperture": 0.04}}
    with use_survey(dataclasses.replace(paus_survey(), flux_error_floor=0.02, method_error_floors={"aperture": 0.04})):
        table = adapt_module._stage_injection(tmp_path, held, catalogue(), "base.pt", tmp_path / "model.pt", config,
                                              floors)
    assert len(calls) == 5
    assert table.groupby("method")["error_floor"].max().to_dict() == {"aperture": 0.04, "lumos": 0.02, "optimal": 0.02}
    # and a classical method's own neighbour floor
    floors = {**floors, "method_neighbour_error_floors": {"optimal": 0.03}}
    with use_survey(dataclasses.replace(paus_survey(), flux_error_floor=0.02, method_error_floors={"aperture": 0.04},
                                        method_neighbour_error_floors={"optimal": 0.03})):
        table = adapt_module._stage_injection(tmp_path, held, catalogue(), "base.pt", tmp_path / "model.pt", config,
                                              floors)
    assert len(calls) == 6
    assert table.groupby("method")["neighbour_error_floor"].max().to_dict() == {"aperture": DEFAULT_NEIGHBOUR_ERROR_FLOOR, "lumos": DEFAULT_NEIGHBOUR_ERROR_FLOOR,
                                                                               "optimal": 0.03}


def test_both_injections_follow_the_surveys_flux_correction(tmp_path, monkeypatch):
    """A survey that corrects each exposure's PSF model (``psf_flux_correction``) measures the floor and
    held-out injections with it; tables cached without it (or with it, for a survey without) are measured again."""
    from lumos_ops.evaluation import injection

    calls = []
    monkeypatch.setattr(injection, "run_injection", _fake_injection(0.03, calls))
    config = small_config(shared_error_populations=("sersic",))
    corrected = dataclasses.replace(paus_survey(), psf_flux_correction=True)

    def floor(survey):
        with use_survey(survey):
            return adapt_module._stage_error_floor(tmp_path, ["/data/t.fits"], catalogue(), tmp_path / "m.pt",
                                                   "ab" * 32, config, survey)

    assert floor(paus_survey())["psf_flux_correction"] is False and len(calls) == 1
    assert floor(corrected)["psf_flux_correction"] is True and len(calls) == 2
    assert "flux_correction" in pd.read_parquet(tmp_path / "floor" / f"sersic-{'ab' * 8}-snr50-150.parquet")
    floor(corrected)
    assert len(calls) == 2  # kept

    def held(survey):
        floors = {"flux_error_floor": 0.011, "neighbour_error_floor": DEFAULT_NEIGHBOUR_ERROR_FLOOR,
                  "psf_flux_correction": survey.psf_flux_correction}
        with use_survey(survey):
            return adapt_module._stage_injection(tmp_path, ["/data/held.fits"], catalogue(), "base.pt",
                                                 tmp_path / "m.pt", config, floors)

    assert "flux_correction" not in held(paus_survey()) and len(calls) == 4
    assert "flux_correction" in held(corrected) and len(calls) == 6
    held(corrected)
    assert len(calls) == 6


def test_both_injections_draw_the_configured_psf_and_their_caches_follow_it(tmp_path, monkeypatch):
    """``psf_profile`` reaches the floor and held-out injections; a cached table drawn with another
    PSF (tables without the column were Kolmogorov) is injected again."""
    from lumos_ops.evaluation import injection

    calls = []
    monkeypatch.setattr(injection, "run_injection", _fake_injection(0.03, calls))
    kolmogorov = small_config(shared_error_populations=("sersic",))
    moffat = small_config(shared_error_populations=("sersic",), psf_profile="moffat")
    train, held, sha = ["/data/train_0.fits"], ["/data/held.fits"], "ab" * 32
    cached = tmp_path / "floor" / f"sersic-{sha[:16]}-snr50-150.parquet"

    def floor(config):
        return adapt_module._stage_error_floor(tmp_path, train, catalogue(), tmp_path / "m.pt", sha, config,
                                               paus_survey())

    assert floor(kolmogorov)["psf_profile"] == "kolmogorov" and len(calls) == 1
    pd.read_parquet(cached).drop(columns="psf_profile").to_parquet(cached)  # a table of the code before the column
    (tmp_path / "error_floor.json").unlink()
    floor(kolmogorov)
    assert len(calls) == 1  # read as Kolmogorov: kept
    assert floor(moffat)["psf_profile"] == "moffat" and len(calls) == 2
    assert set(pd.read_parquet(cached)["psf_profile"]) == {"moffat"}
    floor(moffat)
    assert len(calls) == 2

    floors = {"flux_error_floor": 0.011, "neighbour_error_floor": DEFAULT_NEIGHBOUR_ERROR_FLOOR}

    def held_out(config):
        return adapt_module._stage_injection(tmp_path, held, catalogue(), "base.pt", tmp_path / "m.pt", config, floors)

    held_out(kolmogorov)
    assert len(calls) == 4  # base and candidate
    table = held_out(moffat)
    assert len(calls) == 6 and set(table["psf_profile"]) == {"moffat"}
    held_out(moffat)
    assert len(calls) == 6


def test_floor_transfer_compares_the_training_floor_with_what_the_held_out_rows_ask():
    floors = {"measured": True, "flux": {"floor": 0.0078, "floor_err": 0.0014}}

    def report(asked, err):
        return {"populations": {"sersic": {"methods": {"lumos": {"error_floor": {"asked": {"floor": asked,
                                                                                          "floor_err": err}}}}}}}

    far = adapt_module.floor_transfer(floors, report(0.0, 0.0032))  # seed 0 of reports/adapt/stars-training/floor-range
    assert far["z"] == pytest.approx(-0.0078 / np.hypot(0.0014, 0.0032)) and not far["carries_over"]
    near = adapt_module.floor_transfer(floors, report(0.009, 0.002))
    assert near["carries_over"] and near["applied"] == 0.0078 and near["asked_err"] == 0.002
    assert adapt_module.floor_transfer({"measured": False}, report(0.0, 0.003)) is None
    assert adapt_module.floor_transfer(floors, report(float("nan"), float("nan"))) is None  # too few bright rows
    assert adapt_module.floor_transfer(floors, {"populations": {}}) is None


def test_a_rerun_with_other_settings_is_refused_and_run_only_settings_are_not(tmp_path):
    """Every stage keeps what an earlier run of the directory made: other settings would get the old
    model and injection under their name, so they are refused; device, threads and progress are not
    settings of what is made."""
    from lumos_ops.lumos.adapt import _stage_settings

    out = tmp_path / "run"
    out.mkdir()
    config, cat = small_config(), catalogue()
    _stage_settings(out, config, "base-a", cat)
    _stage_settings(out, dataclasses.replace(config, device="cpu", num_threads=1, progress=False), "base-a", cat)
    with pytest.raises(LumosValueError, match=r"settings.json: this output directory was made with other settings "
                                              r"\(epochs 2 -> 3\); use a new --out"):
        _stage_settings(out, dataclasses.replace(config, epochs=3), "base-a", cat)
    with pytest.raises(LumosValueError, match=r"base_sha256 'base-a' -> 'base-b'"):
        _stage_settings(out, config, "base-b", cat)
    with pytest.raises(LumosValueError, match="catalog_sha256"):
        _stage_settings(out, config, "base-a", cat.assign(r50=cat["r50"] * 1.1))


def test_an_out_that_is_a_file_is_one_error(exposures, tmp_path):
    root, _ = exposures
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputFileError, match=r"--out .*afile: is a file"):
        adapt(root, catalogue(), tmp_path / "afile", small_config())
    with pytest.raises(InputFileError, match="no FITS exposure"):  # inputs first: no empty --out left behind
        adapt(str(tmp_path / "none" / "*.fits"), catalogue(), tmp_path / "fresh", small_config())
    assert not (tmp_path / "fresh").exists()
