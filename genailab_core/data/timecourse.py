"""Time-course data: Klein et al. 2015, mouse ES cells sampled 0, 2, 4 and 7 days after LIF withdrawal.

Two loaders with one output layout (cells x genes, raw UMI counts in CSR ``.X``, ``obs["day"]`` an
ordered categorical of the sampling day, ``obs["time"]`` the day as a float, ``obs["library_size"]``):

- :func:`load_klein2015`: the 1,000-cell x 900-gene subset (tmscc), which the book's chapters read;
- :func:`load_klein2015_geo`: the full data, GEO GSE65525's per-day CSV files (genes x cells, no
  header row, first column the gene symbol).

and :func:`ot_sequences`, sequences of cells through the days built from optimal-transport couplings.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from .datasets import _counts_csr, _finish
from .preprocess import library_size
from .registry import resolve_file

DAYS = (0, 2, 4, 7)
GEO_FILES = {
    0: "GSM1599494_ES_d0_main.csv.bz2",
    2: "GSM1599497_ES_d2_LIFminus.csv.bz2",
    4: "GSM1599498_ES_d4_LIFminus.csv.bz2",
    7: "GSM1599499_ES_d7_LIFminus.csv.bz2",
}


def _time_course(counts: np.ndarray, genes, cells, days, name: str) -> ad.AnnData:
    """counts: (cells, genes) -> AnnData in the layout of the module docstring."""
    obs = pd.DataFrame({"day": pd.Categorical(days, categories=list(DAYS), ordered=True)},
                       index=pd.Index(cells, dtype=str))
    obs["time"] = obs["day"].astype(int).astype(np.float64)
    adata = ad.AnnData(X=_counts_csr(counts, f"{name} counts"), obs=obs,
                       var=pd.DataFrame(index=pd.Index(genes, dtype=str)))
    adata.obs["library_size"] = library_size(adata)
    return _finish(adata, name)


def load_klein2015(path: str | Path | None = None) -> ad.AnnData:
    """The tmscc subset of Klein et al. 2015: 1,000 cells x 900 genes, days 0/2/4/7 (359/101/248/292 cells).

    The genes are the most highly expressed ones (not an HVG selection); ``../shared/data/PROVENANCE.md``
    section 7 says what is known of the subset.
    """
    name = "klein2015"
    profile = pd.read_csv(resolve_file(name, "profile.txt", path), index_col=0)      # (genes, cells)
    days = pd.read_csv(resolve_file(name, "labels.txt", path), header=None).iloc[:, 0].to_numpy()
    if len(days) != profile.shape[1] or not set(days) <= set(DAYS):
        raise ValueError(f"labels.txt has {len(days)} days {sorted(set(days))} for {profile.shape[1]} cells; "
                         f"expected one of {DAYS} per cell. Re-download both files (data fetch {name}).")
    return _time_course(profile.to_numpy().T, profile.index, profile.columns, days, name)


def read_geo_day(file: str | Path, day: int) -> pd.DataFrame:
    """One GEO GSE65525 file: genes x cells, no header row, the gene symbol first. Returns (genes, cells)."""
    table = pd.read_csv(file, header=None, index_col=0)
    values = table.apply(pd.to_numeric, errors="coerce")
    if table.shape[1] == 0 or values.isna().any().any() or (values.to_numpy() % 1 != 0).any():
        raise ValueError(f"{file} is not a GEO GSE65525 count table: expected genes x cells of whole UMI counts, "
                         "no header row, the gene symbol in the first column (as GSM1599494_ES_d0_main.csv.bz2). "
                         "A header row or non-integer values mean another file or a processed copy.")
    values.columns = [f"d{day}_{i}" for i in range(values.shape[1])]
    return values


def load_klein2015_geo(files: str | Path | Mapping[int, str | Path]) -> ad.AnnData:
    """The full Klein et al. 2015 time course from GEO GSE65525's per-day CSVs (days 0, 2, 4, 7).

    files: a folder holding the four files under their GEO names (``GEO_FILES``), or {day: path}.
    Genes must agree across days (the GEO files share one gene list).
    """
    if not isinstance(files, Mapping):
        folder = Path(files)
        files = {day: folder / filename for day, filename in GEO_FILES.items()}
    if set(files) != set(DAYS):
        raise ValueError(f"files has days {sorted(files, key=str)}; the GEO GSE65525 time course needs one file for each "
                         f"of the days {list(DAYS)}, e.g. {{0: '{GEO_FILES[0]}', ...}} or a folder holding all four.")
    missing = [f"day {d}: {files[d]}" for d in DAYS if not Path(files[d]).is_file()]
    if missing:
        raise FileNotFoundError(f"Missing GEO GSE65525 files ({'; '.join(missing)}). Download them from "
                                "https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE65525 (the *_ES_d*.csv.bz2 "
                                "supplementary files) into one folder.")
    tables = {day: read_geo_day(files[day], day) for day in DAYS}
    genes = tables[DAYS[0]].index
    for day, table in tables.items():
        if not table.index.equals(genes):
            raise ValueError(f"The genes of day {day} ({files[day]}) differ from day {DAYS[0]}'s; use the GEO files "
                             "as published, which share one gene list.")
    counts = np.concatenate([t.to_numpy().T for t in tables.values()])                # (cells, genes)
    days = np.concatenate([[day] * t.shape[1] for day, t in tables.items()])
    cells = np.concatenate([t.columns for t in tables.values()])
    return _time_course(counts, genes, cells, days, "klein2015_geo")


def ot_sequences(by_step: Sequence[np.ndarray], n_sequences: int, block: int = 64, seed: int = 0) -> np.ndarray:
    """Sequences of cells through snapshot data, by chaining optimal-transport couplings between consecutive steps.

    A time course measures different cells at each step, so no cell has a trajectory. The static-OT assumption
    (Schiebinger et al. 2019, without growth rates): between consecutive steps, cells move so that the total squared
    displacement is least. Each round draws ``block`` cells from every step (with replacement only when a step has
    fewer cells), pairs consecutive blocks by an exact OT assignment (equal sizes and weights make the optimal plan
    a permutation; Hungarian algorithm), and follows the pairs from the first step to the last.

    by_step: one (n_k, d) array per step, in time order. Returns (n_sequences, L, d).
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    if len(by_step) < 2 or any(np.ndim(x) != 2 for x in by_step) or len({np.shape(x)[1] for x in by_step}) != 1:
        raise ValueError("by_step must hold two or more (cells, features) arrays, one per time step in order, with "
                         f"the same features; got shapes {[np.shape(x) for x in by_step]}.")
    rng = np.random.default_rng(seed)
    rounds = []
    for _ in range(-(-n_sequences // block)):
        blocks = [x[rng.choice(len(x), block, replace=len(x) < block)] for x in by_step]
        chain = [blocks[0]]
        for nxt in blocks[1:]:
            _, partner = linear_sum_assignment(cdist(chain[-1], nxt, "sqeuclidean"))      # row i -> nxt[partner[i]]
            chain.append(nxt[partner])
        rounds.append(np.stack(chain, 1))                                                   # (block, L, d)
    return np.concatenate(rounds)[:n_sequences]
