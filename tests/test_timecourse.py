"""Klein et al. 2015: the subset's layout against PROVENANCE.md, and the GEO loader on files of GEO's layout."""
import bz2

import numpy as np
import pytest

from genailab_core.data import load_dataset, load_klein2015, load_klein2015_geo
from genailab_core.data.timecourse import GEO_FILES


@pytest.fixture(scope="module")
def klein(data_root):
    return load_klein2015()


def test_subset_matches_provenance(klein):
    assert klein.shape == (1000, 900)
    assert klein.obs["day"].value_counts().sort_index().tolist() == [359, 101, 248, 292]
    assert list(klein.obs["day"].cat.categories) == [0, 2, 4, 7] and klein.obs["day"].cat.ordered
    totals = np.asarray(klein.X.sum(1)).ravel()
    assert totals.min() == 956 and totals.max() == 26_129 and np.median(totals) == pytest.approx(5_649, abs=1)
    assert klein.X.max() == 2_309 and np.all(klein.X.data == np.round(klein.X.data))
    assert list(klein.var_names[:3]) == ["Rn28s1", "Rn45s", "Actg1"]
    np.testing.assert_array_equal(klein.obs["time"].to_numpy(), klein.obs["day"].astype(int).to_numpy())
    assert load_dataset("klein2015").shape == (1000, 900)


def _write_geo(folder, klein, header=False):
    """Write the subset as GEO GSE65525's per-day files: genes x cells, no header, gene symbol first, bz2."""
    for day, name in GEO_FILES.items():
        part = klein[klein.obs["day"] == day]
        rows = [",".join([gene, *map(str, part.X[:, j].toarray().ravel().astype(int))])
                for j, gene in enumerate(part.var_names)]
        text = ("," + ",".join(part.obs_names) + "\n" if header else "") + "\n".join(rows) + "\n"
        (folder / name).write_bytes(bz2.compress(text.encode()))


def test_geo_loader_reads_files_of_the_geo_layout(klein, tmp_path):
    _write_geo(tmp_path, klein)
    full = load_klein2015_geo(tmp_path)
    order = np.argsort(klein.obs["day"].astype(int).to_numpy(), kind="stable")
    assert full.shape == klein.shape and list(full.var_names) == list(klein.var_names)
    np.testing.assert_array_equal(full.X.toarray(), klein.X[order].toarray())
    np.testing.assert_array_equal(full.obs["day"].astype(int), klein.obs["day"].astype(int).to_numpy()[order])


def test_geo_loader_rejects_a_file_of_another_layout(klein, tmp_path):
    _write_geo(tmp_path, klein, header=True)                    # a header row: not GEO's layout
    with pytest.raises(ValueError, match="not a GEO GSE65525 count table"):
        load_klein2015_geo(tmp_path)
    (tmp_path / GEO_FILES[4]).unlink()
    with pytest.raises(FileNotFoundError, match="day 4"):
        load_klein2015_geo(tmp_path)


def test_geo_loader_rejects_non_integer_values_and_missing_days(klein, tmp_path):
    _write_geo(tmp_path, klein)
    day2 = tmp_path / GEO_FILES[2]
    text = bz2.decompress(day2.read_bytes()).decode().splitlines()
    gene, first, *rest = text[0].split(",")
    text[0] = ",".join([gene, str(int(first) + 0.5), *rest])           # a normalized, not a count, value
    day2.write_bytes(bz2.compress(("\n".join(text) + "\n").encode()))
    with pytest.raises(ValueError, match=f"{GEO_FILES[2]} is not a GEO GSE65525 count table.*no header row"):
        load_klein2015_geo(tmp_path)
    files = {day: tmp_path / name for day, name in GEO_FILES.items() if day != 7}
    with pytest.raises(ValueError, match=r"days \[0, 2, 4\].*\[0, 2, 4, 7\]"):
        load_klein2015_geo(files)


def test_subset_layout_checks(klein):
    assert klein.X.format == "csr" and klein.X.dtype == np.float32
    np.testing.assert_array_equal(klein.obs["library_size"], np.asarray(klein.X.sum(1)).ravel())
    assert klein.obs["time"].dtype == np.float64 and klein.uns["dataset"] == "klein2015"


def test_ot_sequences_chain_optimal_assignments_between_consecutive_steps():
    import ot
    from genailab_core.data import ot_sequences

    rng = np.random.default_rng(0)
    steps = [rng.standard_normal((n, 3)) + 2.0 * k for k, n in enumerate([12, 5, 9])]   # step 1 has too few cells
    seqs = ot_sequences(steps, n_sequences=8, block=8, seed=1)
    assert seqs.shape == (8, 3, 3)
    for k, cells in enumerate(steps):                                         # every slot holds cells of its step
        assert all((np.abs(cells - s).sum(1) < 1e-12).any() for s in seqs[:, k])
    for k in range(2):                                                         # each link is an optimal plan (POT)
        a, b = seqs[:, k], seqs[:, k + 1]
        cost = ((a[:, None] - b[None]) ** 2).sum(-1)
        optimal = ot.emd2(np.full(8, 1 / 8), np.full(8, 1 / 8), cost)
        assert np.isclose(np.trace(cost) / 8, optimal)
        assert np.trace(cost) / 8 < cost.mean()                               # and better than random pairing


def test_ot_sequences_refuse_a_single_step_or_mismatched_features():
    from genailab_core.data import ot_sequences

    with pytest.raises(ValueError, match="two or more"):
        ot_sequences([np.zeros((4, 2))], 4)
    with pytest.raises(ValueError, match="same features"):
        ot_sequences([np.zeros((4, 2)), np.zeros((4, 3))], 4)
