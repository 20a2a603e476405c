"""MethodsBenchConfig validation (bench/methods.py); the benchmark run and its table end to end through the CLI:
tests/cli/test_bench_methods.py."""

from __future__ import annotations

import pytest

from lumos_ops.bench.methods import MethodsBenchConfig
from lumos_ops.exceptions import LumosValueError


def test_config_is_validated() -> None:
    with pytest.raises(LumosValueError, match="methods"):
        MethodsBenchConfig(methods=("psf",))
    with pytest.raises(LumosValueError, match="n_stamps"):
        MethodsBenchConfig(n_stamps=0)
