"""The simulated sky: catalogue galaxies, fainter un-catalogued galaxies and stars, with positions."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from lumos_ops.sim.population import R50_RANGE, SERSIC_RANGE, draw_galaxies, draw_stars, njy_columns
from lumos_ops.sim.survey_config import SurveyConfig

__all__ = ["Sky", "make_sky", "CATALOG_COLUMNS"]

CATALOG_COLUMNS: tuple[str, ...] = (
    "ref_id", "ra", "dec", "r50", "sersic_n", "q", "pa", "i_auto", "zspec", "sed_type", "ebv",
)
"""Leading columns of ``catalog.parquet``; the 40 ``flux_nJy_<band>`` columns follow."""


@dataclasses.dataclass(frozen=True)
class Sky:
    """Every source of the field.

    Attributes
    ----------
    catalog : pandas.DataFrame
        The external catalogue: :data:`CATALOG_COLUMNS` then ``flux_nJy_NB455`` ...
        ``flux_nJy_NB845`` (true flux densities, nJy). With ``catalog_shape_error > 0`` the
        published ``r50``, ``sersic_n``, ``q``, ``pa`` carry errors and the rendered values
        follow as ``r50_true``, ``sersic_n_true``, ``q_true``, ``pa_true``.
    faint : pandas.DataFrame
        Un-catalogued galaxies (same columns, ``ref_id`` negative).
    stars : pandas.DataFrame
        ``ra``, ``dec``, ``i_mag`` and the 40 ``flux_nJy_<band>`` columns.
    """

    catalog: pd.DataFrame
    faint: pd.DataFrame
    stars: pd.DataFrame


def _positions(rng: np.random.Generator, n: int, config: SurveyConfig) -> tuple[np.ndarray, np.ndarray]:
    width, height = config.field_size
    cos_dec = math.cos(math.radians(config.dec_center))
    ra = config.ra_center + (rng.uniform(size=n) - 0.5) * width / 60.0 / cos_dec
    dec = config.dec_center + (rng.uniform(size=n) - 0.5) * height / 60.0
    return ra, dec


def _with_positions(rng: np.random.Generator, table: pd.DataFrame, config: SurveyConfig, first_id: int, step: int) -> pd.DataFrame:
    ra, dec = _positions(rng, len(table), config)
    head = pd.DataFrame({"ref_id": first_id + step * np.arange(len(table), dtype=np.int64), "ra": ra, "dec": dec})
    table = pd.concat([head, table.reset_index(drop=True)], axis=1)
    return table[list(CATALOG_COLUMNS) + njy_columns()]


def _perturb_shapes(rng: np.random.Generator, catalog: pd.DataFrame, error: float) -> pd.DataFrame:
    """Published shapes with errors: log-normal ``error`` dex on r50 and n, ``error`` on q, pa."""
    n = len(catalog)
    true = catalog[["r50", "sersic_n", "q", "pa"]].add_suffix("_true")
    published = catalog.copy()
    published["r50"] = np.clip(catalog["r50"] * 10 ** (error * rng.normal(size=n)), *R50_RANGE)
    published["sersic_n"] = np.clip(catalog["sersic_n"] * 10 ** (error * rng.normal(size=n)), *SERSIC_RANGE)
    published["q"] = np.clip(catalog["q"] + error * rng.normal(size=n), 0.05, 1.0)
    published["pa"] = np.mod(catalog["pa"] + np.degrees(error) * rng.normal(size=n) / np.maximum(1.0 - catalog["q"], 0.1), 180.0)
    return pd.concat([published, true], axis=1)


def make_sky(config: SurveyConfig) -> Sky:
    """Draw the field's sources (reproducible from ``config.seed``).

    Catalogue galaxies number ``config.n_catalog_galaxies`` with ``ref_id`` 1, 2, ...; faint
    galaxies follow the same number-count slope into ``config.faint_i_range`` (ids -1, -2, ...);
    stars have density ``config.star_density`` plus ``config.bright_star_density`` saturated
    ones (at least one when stars are switched on).
    """
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 4]))
    n_cat = config.n_catalog_galaxies
    catalog = _with_positions(rng, draw_galaxies(rng, n_cat, i_range=config.i_range), config, 1, 1)
    if config.catalog_shape_error > 0:
        catalog = _perturb_shapes(np.random.default_rng(np.random.SeedSequence([config.seed, 5])), catalog,
                                  config.catalog_shape_error)
    faint = catalog.iloc[:0]
    if config.artefacts.faint_galaxies and n_cat:
        lo, hi = config.i_range
        flo, fhi = config.faint_i_range
        ratio = (10 ** (0.33 * fhi) - 10 ** (0.33 * flo)) / (10 ** (0.33 * hi) - 10 ** (0.33 * lo))
        n_faint = int(rng.poisson(n_cat * ratio))
        faint = _with_positions(rng, draw_galaxies(rng, n_faint, i_range=config.faint_i_range), config, -1, -1)
    stars = pd.DataFrame(columns=["ra", "dec", "i_mag", *njy_columns()], dtype=np.float64)
    if config.artefacts.stars:
        n_stars = int(rng.poisson(config.star_density * config.field_area))
        n_bright = max(1, int(rng.poisson(config.bright_star_density * config.field_area)))
        table = pd.concat(
            [draw_stars(rng, n_stars), draw_stars(rng, n_bright, mag_range=(11.0, 13.0))], ignore_index=True
        )
        ra, dec = _positions(rng, len(table), config)
        stars = pd.concat([pd.DataFrame({"ra": ra, "dec": dec}), table], axis=1)
    return Sky(catalog=catalog, faint=faint, stars=stars)
