"""Tests for the PAUS constants and the flag bit mask."""

from __future__ import annotations

import pytest

from lumos_ops import constants
from lumos_ops.flags import Flag, describe_flags


def test_paus_bands_trays_and_exposure_times() -> None:
    assert len(constants.NB_BANDS) == 40 and constants.NB_BANDS[0] == "NB455" and constants.NB_BANDS[-1] == "NB845"
    assert [len(t) for t in constants.TRAYS] == [8] * 5
    assert constants.band_exptime("NB685") == 90.0
    assert constants.band_exptime("NB455") == 70.0 and constants.band_exptime("NB845") == 130.0
    assert constants.band_centre_nm("NB685") == 685.0


def test_band_epoch_index_covers_80_rows() -> None:
    rows = {constants.band_epoch_index(b, e) for b in constants.NB_BANDS for e in (0, 1)}
    assert rows == set(range(constants.n_band_epochs()))
    with pytest.raises(ValueError, match="epoch"):
        constants.band_epoch_index("NB685", 2)
    with pytest.raises(ValueError, match="unknown band"):
        constants.band_epoch_index("r", 0)


def test_describe_flags() -> None:
    assert describe_flags(Flag.EDGE | Flag.SATURATED) == ["EDGE", "SATURATED"]
    assert describe_flags(0) == []
