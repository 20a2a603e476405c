"""The issue's targets table (evaluation/targets.py)."""

import pytest

from lumos_ops.evaluation.targets import format_targets, issue_targets


def test_issue_targets_table():
    overall = {"lumos": {"sigma68": 0.2, "bias": 0.0}, "optimal": {"sigma68": 0.3}, "aperture": {"sigma68": 0.25}}
    binned = {"lumos": [{"mag_lo": 20.0, "mag_hi": 21.0, "n": 10, "bias": 0.02},
                        {"mag_lo": 21.0, "mag_hi": 22.0, "n": 10, "bias": -0.05},
                        {"mag_lo": 22.0, "mag_hi": 23.0, "n": 10, "bias": 0.5}]}
    deblend = {"lumos": [{"d_lo": 2.0, "d_hi": 4.0, "n": 5, "bias": 0.5}, {"d_lo": 6.0, "d_hi": 8.0, "n": 5, "bias": -0.08}]}
    rows = {r["name"]: r for r in issue_targets(overall, binned, pit_ks=0.02, coverage68=0.72, deblend=deblend)}
    assert rows["sigma68 LUMOS / optimal"]["measured"] == pytest.approx(2 / 3) and rows["sigma68 LUMOS / optimal"]["met"]
    assert rows["sigma68 LUMOS / aperture"]["met"] is False
    assert rows["max |bias| per i_auto bin brighter than 22"]["measured"] == pytest.approx(0.05)
    assert rows["PIT KS distance from uniform"]["met"] is True
    assert rows["coverage of the 68 % interval"]["met"] is False
    assert rows["deblending: max |bias| with neighbour at >= 5 px"]["measured"] == pytest.approx(0.08)
    overall["bayes_optimal"] = {"sigma68": 0.24}
    excess = {"lumos": [{"d_lo": 6.0, "d_hi": 8.0, "n": 5, "bias": 0.03}]}
    rows = {r["name"]: r for r in issue_targets(overall, binned, pit_ks=0.02, coverage68=0.7, deblend=deblend,
                                                deblend_excess=excess)}
    assert "reference bayes_optimal reaches 0.800" in rows["sigma68 LUMOS / optimal"]["detail"]
    assert "neighbour itself causes up to +0.030 (6-8 px)" in rows["deblending: max |bias| with neighbour at >= 5 px"]["detail"]
    assert "PIT KS, likelihood x test population" not in rows  # a posterior model has no such row
    rows = {r["name"]: r for r in issue_targets(overall, binned, pit_ks=0.02, coverage68=0.7,
                                                population_pit_ks=0.047)}
    assert rows["PIT KS, likelihood x test population"]["met"] is False
    missing = issue_targets(overall, binned, pit_ks=0.02, coverage68=0.68, deblend=None)
    assert missing[-1]["met"] is None and missing[-1]["measured"] is None
    text = format_targets(missing)
    assert "n/a" in text and "NO" in text and "yes" in text
