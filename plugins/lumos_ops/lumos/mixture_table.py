"""The LUMOS flux mixture and its one table form: :class:`Mixtures` <-> columns, once each way.

A LUMOS measurement's flux PDF is a K-component Gaussian mixture (e-/s) and a truncation flag
(:mod:`lumos_ops.lumos.mixture` has its statistics). It has one representation in each place:

* Python: a :class:`Mixtures` (``alpha``, ``mu``, ``sigma`` of shape (n, K), ``truncated`` (n,));
  :func:`~lumos_ops.lumos.inference.predict_mixtures` returns one, and every reader of a table
  gets one back with :func:`mixtures_from_table`.
* Tables (``LumosMethod`` and ``lumos measure`` output, evaluation and injection tables, the
  input of :func:`lumos_ops.pipeline.writer.write_measurements`): the wide columns ``alpha_k``,
  ``mu_k``, ``sigma_k`` (k = 0..K-1) and the boolean ``truncated``, written by
  :func:`mixture_columns` only. They stay readable in CSV.
* PostgreSQL (``lumos.measurements``): ``mix_alpha``, ``mix_mu``, ``mix_sigma`` (``real[]``,
  component k at index k + 1) and ``mix_truncated`` (``boolean``, NULL exactly where a row has no
  mixture). The writer encodes a :class:`Mixtures` read from the table; the co-add reads rows back
  with :func:`mixtures_from_arrays`.

Nothing else names the columns: readers use :func:`has_mixture`, :func:`mixtures_from_table`
and :func:`is_mixture_column`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lumos_ops.exceptions import LumosValueError

__all__ = [
    "Mixtures",
    "PARAMETERS",
    "TRUNCATED",
    "mixture_columns",
    "mixtures_from_table",
    "mixtures_from_arrays",
    "has_mixture",
    "is_mixture_column",
]

PARAMETERS: tuple[str, ...] = ("alpha", "mu", "sigma")
"""The mixture's parameters; in a table, component k of parameter ``p`` is the column ``f"{p}_{k}"``."""

TRUNCATED = "truncated"
"""Table column of the truncation flag (``lumos.measurements.mix_truncated`` in the database)."""

_COMPONENT = re.compile(r"^(alpha|mu|sigma)_(\d+)$")


@dataclasses.dataclass(frozen=True)
class Mixtures:
    """Flux PDFs of n targets, in e-/s.

    Attributes
    ----------
    alpha, mu, sigma : ndarray, shape (n, K), float64
    truncated : ndarray of bool, shape (n,)
        Rows whose PDF is the eq. (10) density (components renormalised on f >= 0).
    """

    alpha: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return int(self.truncated.shape[0])

    def __getitem__(self, rows) -> Mixtures:
        """The mixtures of ``rows`` (a boolean mask, indices or a slice)."""
        return Mixtures(alpha=self.alpha[rows], mu=self.mu[rows], sigma=self.sigma[rows], truncated=self.truncated[rows])

    @property
    def args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(alpha, mu, sigma, truncated)``: the positional arguments of :mod:`lumos_ops.lumos.mixture`."""
        return self.alpha, self.mu, self.sigma, self.truncated


def mixture_columns(mixtures: Mixtures) -> dict[str, np.ndarray]:
    """The table columns of ``mixtures``: ``alpha_k``, ``mu_k``, ``sigma_k`` (k = 0..K-1), ``truncated``."""
    columns: dict[str, np.ndarray] = {}
    for name in PARAMETERS:
        values = getattr(mixtures, name)
        for k in range(values.shape[1]):
            columns[f"{name}_{k}"] = values[:, k]
    columns[TRUNCATED] = np.asarray(mixtures.truncated, dtype=bool).copy()
    return columns


def is_mixture_column(name: object) -> bool:
    """Whether a table column holds part of the mixture (``alpha_k``, ``mu_k``, ``sigma_k``, ``truncated``)."""
    return isinstance(name, str) and (name == TRUNCATED or _COMPONENT.match(name) is not None)


def has_mixture(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` has mixture columns (then :func:`mixtures_from_table` reads them or says what is wrong)."""
    return any(is_mixture_column(c) for c in frame.columns)


def mixtures_from_table(frame: pd.DataFrame) -> Mixtures:
    """The :class:`Mixtures` of a table's rows (the inverse of :func:`mixture_columns`).

    Components are read as float64 with NaN and infinities kept (rows of other methods in a long
    table are NaN). A missing ``truncated`` column or value (NaN, None) reads as False.

    Raises
    ------
    LumosValueError
        No ``alpha_k`` columns, or ``alpha``, ``mu`` and ``sigma`` do not all have components
        0..K-1 (and no others).
    """
    found: dict[str, set[int]] = {name: set() for name in PARAMETERS}
    for column in frame.columns:
        match = _COMPONENT.match(column) if isinstance(column, str) else None
        if match:
            found[match.group(1)].add(int(match.group(2)))
    k = len(found["alpha"])
    expected = set(range(k))
    if k == 0 or any(found[name] != expected for name in PARAMETERS):
        have = {name: sorted(found[name]) for name in PARAMETERS}
        raise LumosValueError(f"mixture columns must be alpha_k, mu_k and sigma_k for k = 0..K-1 (and optionally "
                              f"{TRUNCATED}); found components {have}")
    alpha, mu, sigma = (frame[[f"{name}_{i}" for i in range(k)]].to_numpy(np.float64) for name in PARAMETERS)
    if TRUNCATED in frame.columns:
        values = frame[TRUNCATED].to_numpy(dtype=object)
        truncated = np.zeros(len(frame), dtype=bool)
        known = ~pd.isna(values)
        truncated[known] = values[known].astype(bool)
    else:
        truncated = np.zeros(len(frame), dtype=bool)
    return Mixtures(alpha=alpha, mu=mu, sigma=sigma, truncated=truncated)


def mixtures_from_arrays(alpha: Sequence, mu: Sequence, sigma: Sequence, truncated: Sequence) -> Mixtures:
    """The :class:`Mixtures` of database rows: per row a length-K sequence of each parameter
    (``mix_alpha``, ``mix_mu``, ``mix_sigma``) and a flag (``mix_truncated``; NULL reads as False)."""
    n = len(truncated)
    alpha, mu, sigma = (np.asarray(list(values), dtype=np.float64).reshape(n, -1) if n else np.empty((0, 0))
                        for values in (alpha, mu, sigma))
    flags = np.array([bool(t) if t is not None else False for t in truncated], dtype=bool)
    return Mixtures(alpha=alpha, mu=mu, sigma=sigma, truncated=flags)
