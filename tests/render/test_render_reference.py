"""The renderer's CPU shortcuts give the plain code's numbers bit for bit.

Pinned: the table rows interpolated in blocks with in-place arithmetic (``RadialTable.rows``), the
value/slope pairs written straight into float32 (``fourier._packed_rows``), and the stamps without
the per-stamp sums (``render_galaxies(flux_outside=False)``, unit flux not multiplied).
"""

from __future__ import annotations

import numpy as np
import pytest

from lumos_ops.render import render_galaxies
from lumos_ops.render.backend import NumpyBackend
from lumos_ops.render.fourier import _packed_rows
from lumos_ops.render.psf import moffat_table
from lumos_ops.render.sersic import sersic_table


def _plain_rows(table, p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    step = table.param[1] - table.param[0]
    u = (p - table.param[0]) / step
    i = np.clip(np.floor(u).astype(np.int64), 0, table.param.size - 2)
    t = (u - i)[:, None]
    last = table.param.size - 1
    v0 = table.values[np.clip(i - 1, 0, last)]
    v1 = table.values[i]
    v2 = table.values[i + 1]
    v3 = table.values[np.clip(i + 2, 0, last)]
    return v1 + 0.5 * t * (v2 - v0 + t * (2.0 * v0 - 5.0 * v1 + 4.0 * v2 - v3 + t * (3.0 * (v1 - v2) + v3 - v0)))


@pytest.mark.parametrize("name", ["sersic", "moffat"])
@pytest.mark.parametrize("count", [0, 1, 63, 64, 65, 300])
def test_table_rows_match_the_plain_expression(name: str, count: int) -> None:
    table = {"sersic": sersic_table, "moffat": moffat_table}[name]()
    rng = np.random.default_rng(count)
    p = rng.uniform(table.param[0], table.param[-1], count)
    if count > 4:
        p[:4] = table.param[0], table.param[-1], table.param[1], 0.5 * (table.param[2] + table.param[3])
    got = table.rows(p)
    assert got.shape == (count, table.values.shape[1])
    assert got.tobytes() == _plain_rows(table, p).tobytes()


@pytest.mark.parametrize("name", ["sersic", "moffat"])
def test_packed_rows_match_stacked_pairs(name: str) -> None:
    table = {"sersic": sersic_table, "moffat": moffat_table}[name]()
    p = np.random.default_rng(1).uniform(table.param[0], table.param[-1], 70)
    rows = table.rows(p)
    slopes = np.diff(rows, axis=1, append=rows[:, -1:])
    plain = np.ascontiguousarray(np.stack([rows, slopes], axis=-1), dtype=np.float32).view(np.float64)[..., 0]
    assert _packed_rows(name, p, NumpyBackend()).tobytes() == plain.tobytes()


@pytest.mark.parametrize("device", [None, "cpu"])
def test_stamps_without_flux_outside_are_the_same(device: str | None) -> None:
    if device is not None:
        pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    n = 40
    shapes = dict(r50=rng.uniform(0.3, 2.0, n), sersic_n=rng.uniform(0.5, 5.0, n), q=rng.uniform(0.2, 1.0, n),
                  pa=rng.uniform(0, 180, n), psf_fwhm=0.8, dx=rng.uniform(-0.5, 0.5, n), dy=rng.uniform(-0.5, 0.5, n),
                  size=40, device=device)
    full = render_galaxies(**shapes)
    bare = render_galaxies(**shapes, flux_outside=False)
    assert bare.flux_outside is None and len(bare) == len(full) == n
    assert np.asarray(bare.images).tobytes() == np.asarray(full.images).tobytes()
    assert np.array_equal(bare.grid_sizes, full.grid_sizes)
    scaled = render_galaxies(**shapes, flux=np.r_[np.ones(n - 1), 3.0])
    assert np.array_equal(np.asarray(scaled.images)[:-1], np.asarray(full.images)[:-1])
    assert np.array_equal(np.asarray(scaled.images)[-1], np.asarray(full.images)[-1] * np.float32(3.0))


@pytest.mark.parametrize("count", [1, 256, 257, 700])
def test_leak_bounds_in_blocks_are_each_profiles_own(count: int) -> None:
    from lumos_ops.render import grid
    from lumos_ops.render.psf import PsfKind

    rng = np.random.default_rng(count)
    candidates = np.array([g for g in grid.GRID_SIZES if g >= 68][:6], dtype=np.float64)
    shapes = (rng.uniform(0.5, 25.0, count), rng.uniform(0.3, 6.5, count), rng.uniform(0.05, 1.0, count))
    psf = (rng.uniform(1.0, 3.0, count), rng.uniform(2.0, 5.0, count), rng.uniform(0.0, 0.5, count))
    for kind, profile in ((PsfKind.MOFFAT, shapes), (PsfKind.GAUSSIAN, (None, None, None))):
        whole = grid._leak_block(candidates, 60, *profile, *psf, kind)  # the whole batch in one block: the plain code
        assert grid._leak(candidates, 60, *profile, *psf, kind).tobytes() == whole.tobytes()
