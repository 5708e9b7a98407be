"""Published numbers the book sets beside its own, each with its source and what it was measured on.

The numbers live in ``resources/published_numbers.csv`` (one row per number: chapter, method, dataset,
split, metric, value, source, measured_on), never in code or notebook cells, so that each one is cited
once and checked in one place.

    gl.published(chapter=18, metric="l2_top1000ctrl")
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd

COLUMNS = ["chapter", "method", "dataset", "split", "metric", "value", "source", "measured_on"]


@lru_cache(maxsize=1)
def _table() -> pd.DataFrame:
    with resources.files("genailab_core").joinpath("resources/published_numbers.csv").open("r") as handle:
        table = pd.read_csv(handle, dtype={"chapter": int, "value": float})
    missing = set(COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"published_numbers.csv lacks the columns {sorted(missing)}.")
    if table[["source", "measured_on"]].isna().any().any():
        raise ValueError("Every published number needs a source and a note on what it was measured on.")
    return table[COLUMNS]


def published(**where) -> pd.DataFrame:
    """The published numbers whose columns equal ``where`` (e.g. ``chapter=18, dataset="norman2019"``).

    Returns a copy with the columns chapter, method, dataset, split, metric, value, source, measured_on.
    """
    table = _table()
    unknown = set(where) - set(COLUMNS)
    if unknown:
        raise KeyError(f"Unknown column(s) {sorted(unknown)}; filter on {COLUMNS}.")
    keep = pd.Series(True, index=table.index)
    for column, value in where.items():
        keep &= table[column] == value
    return table[keep].reset_index(drop=True)
