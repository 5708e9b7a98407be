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


def test_ot_sequences_of_equal_snapshots_follow_the_optimal_assignment():
    import scipy.optimize
    from genailab_core.data import ot_sequences

    rng = np.random.default_rng(0)
    features = rng.standard_normal((60, 2))
    times = np.repeat([7.0, 0.0, 2.0], 20)                                    # labels in any order
    index, labels = ot_sequences(features, times, 200, seed=0)
    assert labels.tolist() == [0.0, 2.0, 7.0] and index.shape == (200, 3)
    groups = [np.flatnonzero(times == t) for t in (0.0, 2.0, 7.0)]
    for k in range(2):
        source, target = groups[k], groups[k + 1]
        cost = ((features[source][:, None] - features[target][None]) ** 2).sum(-1)
        rows, cols = scipy.optimize.linear_sum_assignment(cost)              # the exact OT map for equal sizes
        partner = dict(zip(source[rows], target[cols]))
        assert all(partner[i] == j for i, j in index[:, k:k + 2].tolist())


def test_ot_sequences_keep_every_snapshot_uniform_and_step_only_on_the_plan():
    import ot
    import scipy.stats
    from genailab_core.data import ot_sequences

    rng = np.random.default_rng(1)
    features = np.concatenate([rng.standard_normal((30, 3)), rng.standard_normal((10, 3)) + 2.0])
    times = np.array([0.0] * 30 + [4.0] * 10)
    index, _ = ot_sequences(features, times, 20_000, seed=1)
    assert set(index[:, 0].tolist()) <= set(range(30)) and set(index[:, 1].tolist()) <= set(range(30, 40))
    assert scipy.stats.chisquare(np.bincount(index[:, 0], minlength=30)).pvalue > 1e-3
    assert scipy.stats.chisquare(np.bincount(index[:, 1] - 30, minlength=10)).pvalue > 1e-3   # uniform on day 4
    cost = ((features[:30][:, None] - features[30:][None]) ** 2).sum(-1)
    support = ot.emd(ot.unif(30), ot.unif(10), cost) > 0
    assert support[index[:, 0], index[:, 1] - 30].all()
    with pytest.raises(ValueError, match=">= 2 distinct times"):
        ot_sequences(features, np.zeros(40), 10)
    with pytest.raises(ValueError, match="one time label per cell"):
        ot_sequences(features, np.zeros(39), 10)
