"""Time-course data: Klein et al. 2015, mouse ES cells sampled 0, 2, 4 and 7 days after LIF withdrawal.

Two loaders with one output layout (cells x genes, raw UMI counts in CSR ``.X``, ``obs["day"]`` an
ordered categorical of the sampling day, ``obs["time"]`` the day as a float, ``obs["library_size"]``):

- :func:`load_klein2015`: the 1,000-cell x 900-gene subset (tmscc), which the book's chapters read;
- :func:`load_klein2015_geo`: the full data, GEO GSE65525's per-day CSV files (genes x cells, no
  header row, first column the gene symbol).

and :func:`ot_sequences`, sequences of cells through the days built from optimal-transport couplings.
"""
from __future__ import annotations

from collections.abc import Mapping
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


def ot_sequences(features, times, n_sequences: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Training sequences from snapshots: chains of cells linked by OT couplings between consecutive times.

    A time course measures different cells at each time, so no cell has a trajectory. A sequence here is a draw
    from the Markov chain whose step from time t_k to t_{k+1} follows the exact OT plan P_k between the two
    snapshots (uniform weights, squared Euclidean cost on ``features``, e.g. z-scored genes or PCs): the coupling
    of Waddington-OT (Schiebinger et al. 2019) without its entropy and growth terms, i.e. cells move so that the
    total squared displacement is least. Start at a uniform cell of t_0, then j ~ P_k[i, :] / P_k[i, :].sum().
    P_k's column sums are uniform, so position k of the chains is uniform over the cells of t_k: every snapshot
    is used as is. What it cannot know: cells that divide or die, and cells that swap states between samplings.

    features: (cells, d); times: (cells,) a time label per cell (any order, >= 2 distinct values).
    Returns cell indices (n_sequences, L) into ``features`` and the sorted time labels (L,).
    """
    import ot
    from scipy.spatial.distance import cdist

    features, times = np.asarray(features, dtype=np.float64), np.asarray(times, dtype=np.float64)
    if features.ndim != 2 or times.shape != (len(features),):
        raise ValueError(f"Expected features (cells, d) and one time label per cell, got {features.shape} and "
                         f"{times.shape}.")
    labels = np.unique(times)                                                   # sorted
    if len(labels) < 2 or n_sequences < 1:
        raise ValueError(f"OT sequences need cells at >= 2 distinct times and n_sequences >= 1, got times "
                         f"{labels.tolist()} and n_sequences={n_sequences}.")
    rng = np.random.default_rng(seed)
    cells = [np.flatnonzero(times == t) for t in labels]
    position = rng.integers(len(cells[0]), size=n_sequences)                    # index within t_0's cells
    chain = [cells[0][position]]
    for k in range(len(labels) - 1):
        a, b = features[cells[k]], features[cells[k + 1]]
        plan = ot.emd(ot.unif(len(a)), ot.unif(len(b)), cdist(a, b, "sqeuclidean"))      # (n_k, n_k+1)
        rows = plan[position] / plan[position].sum(1, keepdims=True)
        position = (rows.cumsum(1) > rng.random((n_sequences, 1))).argmax(1)    # j ~ P_k[i, :] / P_k[i, :].sum()
        chain.append(cells[k + 1][position])
    return np.stack(chain, 1), labels
