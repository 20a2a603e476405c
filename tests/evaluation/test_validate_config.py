"""The validation settings (evaluation/validate_config.py)."""

import pytest

from lumos_ops.exceptions import LumosValueError


def test_validate_config_rejects_unknown_estimator():
    from lumos_ops.evaluation.validate_config import ESTIMATORS, ValidateConfig

    assert ValidateConfig().estimator == "median" and set(ESTIMATORS) == {"median", "mean", "mode"}
    with pytest.raises(LumosValueError, match="estimator must be one of"):
        ValidateConfig(estimator="average")
