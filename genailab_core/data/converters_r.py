"""Converters for the R objects (``.rda``) behind the Kang, Papalexi, Paul and bulk data sets.

Each converter reads the canonical upstream ``.rda`` with the ``rdata`` parser (no R needed)
and writes the placed ``.h5ad`` its loader reads, reproducing ``PROVENANCE.md`` section "How
the R objects in sections 2-5 were converted" (there done with R's ``writeMM``/``write.csv``,
then anndata). :class:`RView` walks the parse tree lazily: S4 slots and R attributes are
:meth:`RView.attr`, list and environment elements :meth:`RView.element`. A file of another
layout raises :class:`RLayoutError` naming the slot expected and what was found.

The placed obs tables went through ``write.csv`` and ``pandas.read_csv``; :func:`r_data_frame`
applies the same typing so the result is equal, not just close (see :func:`_column`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_FIX = (
    "Check that the file is the canonical upstream file named in the registry (genailab_core.data.catalog); "
    "delete it and download it again, or pass the converter meant for this file."
)


class RLayoutError(ValueError):
    """An R file whose objects or slots are not the layout a converter expects."""


def _deref(node: Any) -> Any:
    """Follow references (R's shared objects) and promises (lazy values) to the node they stand for."""
    from rdata.parser import RObjectType as T

    while node.info.type in (T.REF, T.PROM):
        node = node.referenced_object if node.info.type == T.REF else node.value[0]
    return node


def _pairs(node: Any) -> dict[str, Any]:
    """A tagged pairlist (attributes, an environment frame, the .rda top level) as {tag: node}."""
    from rdata.parser import RObjectType as T

    out: dict[str, Any] = {}
    node = None if node is None else _deref(node)
    while node is not None and node.info.type in (T.LIST, T.ATTRLIST):
        car, cdr = node.value
        tag = None if node.tag is None else _deref(node.tag)
        out[str(len(out)) if tag is None else tag.value.value.decode()] = car
        node = _deref(cdr)
    return out


class RView:
    """A lazy view of one node of an ``rdata`` parse tree; ``path`` says how it was reached (for errors)."""

    def __init__(self, node: Any, path: str) -> None:
        self.node = _deref(node)
        self.path = path

    @property
    def kind(self) -> str:
        """The R type: ``S4``, ``VEC`` (list), ``ENV``, ``STR``, ``INT``, ``REAL``, ``LGL``, ..."""
        return self.node.info.type.name

    @property
    def classes(self) -> list[str]:
        """The R ``class`` attribute (empty for plain vectors and lists)."""
        found = _pairs(self.node.attributes).get("class")
        return [] if found is None else [str(c) for c in RView(found, "class").values()]

    def describe(self) -> str:
        """``kind`` plus class, e.g. ``S4 of class dgCMatrix``."""
        return self.kind + (f" of class {'/'.join(self.classes)}" if self.classes else "")

    def attr(self, name: str) -> RView:
        """Slot (S4) or attribute ``name``; :class:`RLayoutError` listing those present otherwise."""
        found = _pairs(self.node.attributes)
        if name not in found:
            raise RLayoutError(
                f"{self.path} ({self.describe()}) has no slot/attribute {name!r}; it has {sorted(found)}. {_FIX}"
            )
        return RView(found[name], f"{self.path}@{name}")

    def has_attr(self, name: str) -> bool:
        """True when slot or attribute ``name`` exists."""
        return name in _pairs(self.node.attributes)

    def names(self) -> list[str]:
        """Element names: the ``names`` attribute of a list, the bindings of an environment."""
        if self.kind == "ENV":
            return list(self._frame())
        return [str(n) for n in self.attr("names").values()] if self.has_attr("names") else []

    def _frame(self) -> dict[str, Any]:
        """An environment's bindings, from its frame pairlist and its hash-table buckets."""
        env = self.node.value
        frame = _pairs(env.frame)
        table = _deref(env.hash_table)
        for bucket in table.value if table.info.type.name == "VEC" else []:
            frame.update(_pairs(bucket))
        return frame

    def element(self, name: str) -> RView:
        """``x$name`` of a list or environment; :class:`RLayoutError` listing the names present otherwise."""
        names = self.names()
        if name in names:
            node = self._frame()[name] if self.kind == "ENV" else self.node.value[names.index(name)]
            return RView(node, f"{self.path}${name}")
        raise RLayoutError(f"{self.path} ({self.describe()}) has no element {name!r}; it has {names}. {_FIX}")

    def values(self) -> np.ndarray:
        """An atomic vector as numpy: strings as object (NA -> None); NA ints/logicals stay masked."""
        if self.kind == "STR":
            return np.array([None if c.value is None else c.value.decode() for c in self.node.value], dtype=object)
        if self.kind in ("INT", "REAL", "LGL"):
            return self.node.value
        raise RLayoutError(f"{self.path} is {self.describe()}, not an atomic vector. {_FIX}")

    def expect(self, *classes: str) -> RView:
        """Self when its class is one of ``classes``; :class:`RLayoutError` saying what was found otherwise."""
        if not set(classes) & set(self.classes):
            wanted = " or ".join(classes)
            raise RLayoutError(f"{self.path} should be of class {wanted}, found {self.describe()}. {_FIX}")
        return self


def load_rda(path: Path, *names: str) -> RView:
    """The first object called one of ``names`` in the ``.rda`` file ``path``.

    Raises :class:`RLayoutError` for a file that is not R serialization or holds none of ``names``.
    """
    import warnings

    import rdata

    try:
        with warnings.catch_warnings():  # "Unknown file type: assumed RDS" for non-R files; the error says it
            warnings.simplefilter("ignore")
            parsed = rdata.parser.parse_file(path)
    except Exception as err:  # rdata raises several types for a file that is not R serialization
        raise RLayoutError(f"{path} is not an R data file that rdata can parse ({err}). {_FIX}") from err
    objects = _pairs(parsed.object)
    for name in names:
        if name in objects:
            return RView(objects[name], name)
    raise RLayoutError(
        f"{path} should hold an R object named {' or '.join(names)}; it holds {sorted(objects) or 'none'}. {_FIX}"
    )


def r_sparse(matrix: RView) -> tuple[Any, list[str] | None, list[str] | None]:
    """A Matrix ``dgCMatrix``/``dgTMatrix`` (features x cells) as (scipy COO, row names, column names)."""
    import scipy.sparse as sp

    matrix.expect("dgCMatrix", "dgTMatrix")
    shape = tuple(int(d) for d in matrix.attr("Dim").values())
    x, i = matrix.attr("x").values(), matrix.attr("i").values()
    if "dgCMatrix" in matrix.classes:
        coo = sp.csc_matrix((x, i, matrix.attr("p").values()), shape=shape).tocoo()
    else:
        coo = sp.coo_matrix((x, (i, matrix.attr("j").values())), shape=shape)
    rows, cols = (_optional_strings(RView(node, "Dimnames")) for node in matrix.attr("Dimnames").node.value)
    return coo, rows, cols


def _optional_strings(names: RView) -> list[str] | None:
    """Row or column names of a matrix; None where R stores NULL (e.g. sceptredata's cells)."""
    return None if names.kind in ("NILVALUE", "NIL") else [str(n) for n in names.values()]


def counts_csr(matrix: Any) -> Any:
    """Features x cells counts -> cells x features float32 CSR (the placed single-cell layout)."""
    return matrix.T.tocsr().astype(np.float32)


def _column(column: RView) -> pd.Series:
    """One R column typed as ``write.csv`` + ``read_csv`` + "strings as categories" left it.

    factor/character -> category (levels present, sorted); integer -> int64 (float64 with NA);
    logical -> bool; double -> :func:`_csv_doubles`.
    """
    if column.kind == "STR" or "factor" in column.classes:
        return pd.Series(_strings(column), dtype="category")
    values = column.values()
    if np.ma.isMaskedArray(values) and values.mask.any():
        return pd.Series(values.astype(np.float64).filled(np.nan))
    values = np.asarray(values)
    if column.kind != "REAL":
        return pd.Series(values.astype(bool if column.kind == "LGL" else np.int64))
    return _csv_doubles(values)


def _csv_doubles(values: np.ndarray) -> pd.Series:
    """Doubles as R's ``write.csv`` (15 significant digits) then ``pandas.read_csv`` (its default parser,
    which is not always correctly rounded; int64 when all values are whole) leave them."""
    import io

    text = "\n".join(f"{v:.15g}" for v in values)
    return pd.read_csv(io.StringIO("x\n" + text + "\n"))["x"].rename(None)


def _strings(column: RView) -> np.ndarray:
    """A character vector, or a factor's labels (NA -> None)."""
    if column.kind == "STR":
        return column.values()
    codes = np.ma.filled(np.ma.asarray(column.values()), 0).astype(np.int64)
    levels = np.concatenate([[None], column.attr("levels").values()]).astype(object)
    return levels[codes]


def r_data_frame(columns: RView, index: list[str]) -> pd.DataFrame:
    """A named list of equal-length columns (``data.frame``, ``DataFrame@listData``) -> pandas (see :func:`_column`)."""
    frame = pd.DataFrame({name: _column(columns.element(name)) for name in columns.names()})
    frame.index = pd.Index(index, dtype=object)
    return frame


def _s4_frame(dframe: RView) -> pd.DataFrame:
    """A Bioconductor ``DataFrame`` (slots ``listData``, ``rownames``) -> pandas."""
    dframe.expect("DataFrame", "DFrame")
    return r_data_frame(dframe.attr("listData"), list(dframe.attr("rownames").values()))


def _write_cells(counts: Any, obs: pd.DataFrame, genes: list[str], target: Path, **extra: Any) -> None:
    """Write a cells x genes AnnData (obs, var names, optional obsm/uns) as gzip h5ad."""
    import anndata as ad

    adata = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=pd.Index(genes, dtype=object)), **extra)
    adata.write_h5ad(target, compression="gzip")


def convert_seurat_ifnb1k(rda_file: Path, target: Path) -> None:
    """seuratTools ``data/ifnb1k.rda`` (Seurat v4) -> ``kang2018_ifnb1k_seuratTools.h5ad`` (832 x 14,053).

    X = ``ifnb1k@assays$RNA@counts`` transposed; obs = ``ifnb1k@meta.data`` (PROVENANCE sections 2 and
    "How the R objects ... were converted").
    """
    seurat = load_rda(rda_file, "ifnb1k").expect("Seurat")
    counts, genes, cells = r_sparse(seurat.attr("assays").element("RNA").attr("counts"))
    meta = seurat.attr("meta.data").expect("data.frame")
    obs = r_data_frame(meta, list(meta.attr("row.names").values()))
    _check_cells(cells, obs, rda_file)
    _write_cells(counts_csr(counts), obs, genes, target)


def convert_muscat_sce(rda_file: Path, target: Path) -> None:
    """muscat ``data/example_sce.rda`` (SingleCellExperiment) -> ``kang2018_muscat_example_sce.h5ad`` (1,556 x 1,267).

    X = the ``counts`` assay transposed (``logcounts`` is dropped); obs = colData (PROVENANCE section 2).
    """
    sce = load_rda(rda_file, "example_sce").expect("SingleCellExperiment")
    assays = sce.attr("assays").attr("data").attr("listData")
    _write_sce(sce, assays, rda_file, target)


def convert_tradeseq_se(rda_file: Path, target: Path) -> None:
    """tradeSeq ``data/se.rda`` (older SingleCellExperiment) -> ``paul15_tradeSeq_se.h5ad`` (2,660 x 3,004).

    Its assays live in a reference-class environment (``get("data", envir=assays@.xData)``);
    obs = all 22 colData columns, with the Monocle ``cluster`` ids as categories (PROVENANCE section 4).
    """
    se = load_rda(rda_file, "se").expect("SingleCellExperiment", "SummarizedExperiment")
    assays = se.attr("assays").attr(".xData").element(".->data").attr("listData")
    _write_sce(se, assays, rda_file, target, categorical=("cluster",))


def _write_sce(sce: RView, assays: RView, rda_file: Path, target: Path, categorical: tuple[str, ...] = ()) -> None:
    """The counts assay and colData of a (Single)SummarizedExperiment -> cells x genes h5ad."""
    counts, genes, cells = r_sparse(assays.element("counts"))
    obs = _s4_frame(sce.attr("colData"))
    for name in categorical:
        obs[name] = obs[name].astype(str).astype("category")
    _check_cells(cells, obs, rda_file)
    _write_cells(counts_csr(counts), obs, genes, target)


def _check_cells(cells: list[str] | None, obs: pd.DataFrame, rda_file: Path) -> None:
    """The count matrix's columns must be the obs rows, in order."""
    if cells is None or list(cells) != list(obs.index):
        raise RLayoutError(f"{rda_file}: the count matrix's column names differ from the cell table's rows. {_FIX}")


def convert_sceptre_lowmoi(rda_file: Path, target: Path) -> None:
    """sceptredata ``data/lowmoi_example_data.rda`` -> ``papalexi2021_thp1_lowmoi_sceptredata.h5ad`` (20,729 x 299).

    X = ``response_matrix`` transposed; ``obsm['grna_counts']`` = ``grna_matrix`` transposed (110 gRNAs,
    ids in ``uns['grna_ids']``, targets in ``uns['grna_targets']``); obs = ``bio_rep``, the panel total
    ``n_counts_panel`` and the top-gRNA heuristic of :func:`_top_grna` (PROVENANCE section 3).
    """
    data = load_rda(rda_file, "lowmoi_example_data")
    response, genes, _ = r_sparse(data.element("response_matrix"))
    grna, grna_ids, _ = r_sparse(data.element("grna_matrix"))
    cells = [f"cell_{k + 1}" for k in range(response.shape[1])]
    covariates = data.element("extra_covariates").expect("data.frame")
    table = data.element("grna_target_data_frame").expect("data.frame")
    target_of = dict(zip(_strings(table.element("grna_id")), _strings(table.element("grna_target"))))
    targets = np.array([target_of[g] for g in grna_ids], dtype=object)
    counts, guides = counts_csr(response), counts_csr(grna)
    obs = r_data_frame(covariates, cells).join(_top_grna(guides, np.array(grna_ids, dtype=object), targets, cells))
    obs["n_counts_panel"] = np.asarray(counts.sum(axis=1)).ravel().astype(np.float32)
    ids = np.array(grna_ids, dtype=object)
    uns = {"grna_ids": ids, "grna_targets": {"grna_id": ids.copy(), "grna_target": targets}}
    _write_cells(counts, obs, genes, target, obsm={"grna_counts": guides}, uns=uns)


def _top_grna(guides: Any, grna_ids: np.ndarray, targets: np.ndarray, cells: list[str]) -> pd.DataFrame:
    """Per cell, the gRNA with most UMIs (first on ties), its UMIs, the total, its share and its target.

    A simple heuristic, not sceptre's assignment (PROVENANCE section 3). guides: cells x gRNAs.
    """
    dense = guides.toarray()
    top = dense.argmax(axis=1)
    top_umis = dense[np.arange(len(top)), top].astype(np.int32)
    total = dense.sum(axis=1).astype(np.int32)
    return pd.DataFrame(
        {
            "grna_top": pd.Categorical(grna_ids[top]),
            "grna_top_umis": top_umis,
            "grna_total_umis": total,
            "grna_top_frac": (top_umis / total).astype(np.float32),
            "target_top": pd.Categorical(targets[top]),
        },
        index=pd.Index(cells, dtype=object),
    )


def convert_abcdata_bulk(rda_file: Path, target: Path) -> None:
    """ABCdata ``AsmannTissues.rda``/``WangTissues.rda`` -> ``bodymap2_asmann_recount.h5ad``/``wang2008_recount.h5ad``.

    The R list ``list(Design, Annotation, Expression)``: X = ``Expression`` (genes x samples integer
    matrix) transposed to samples x genes, int32 dense; obs = ``Design`` (PROVENANCE section 5).
    """
    data = load_rda(rda_file, "AsmannTissues", "WangTissues")
    expression = data.element("Expression")
    n_genes, n_samples = (int(d) for d in expression.attr("dim").values())
    genes, samples = (_optional_strings(RView(d, "dimnames")) for d in expression.attr("dimnames").node.value)
    counts = np.asarray(expression.values(), dtype=np.int32).reshape((n_samples, n_genes))  # R is column-major
    obs = r_data_frame(data.element("Design").expect("data.frame"), samples)
    _write_cells(counts, obs, genes, target)
