"""Perturbation splits of GEARS and Ahlmann-Eltze et al.: leak-free, grouped, reproducible."""
import pytest

from genailab_core.data import (
    LeakError,
    canonical_label,
    canonical_labels,
    label_of,
    simulate_perturbations,
    split_additive,
    split_gears,
    targets_of,
)


@pytest.fixture(scope="module")
def sim_labels():
    adata = simulate_perturbations(n_genes=60, n_single=20, n_double=40, cells_per_condition=2, n_control=5, seed=1)
    return adata.obs["condition"]


def _genes(labels):
    return {g for p in labels for g in targets_of(p)}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gears_split_leak_free_and_grouped(sim_labels, seed):
    split = split_gears(sim_labels, gene_holdout_fraction=0.25, seed=seed)
    split.check_no_leak()
    seen = _genes(split.train)
    names = set(sim_labels.cat.categories) - {"control"}
    assert set(split.train) | set(split.test) == names and not set(split.train) & set(split.test)
    for p in split.test:
        n_seen = sum(g in seen for g in targets_of(p))
        group = split.groups[p]
        assert group == ("single_unseen" if len(targets_of(p)) == 1 else f"seen{n_seen}")
    assert set(split.test_groups()) >= {"seen0", "seen1", "seen2", "single_unseen"}
    # every single of a seen gene trains; every test single is of an unseen gene
    assert all(g not in seen for p in split.test_groups()["single_unseen"] for g in targets_of(p))


def test_gears_split_on_norman(norman):
    for seed in range(5):
        split = split_gears(norman.obs["condition"], seed=seed)
        split.check_no_leak()
        cells = split.cell_split(norman.obs["condition"])
        train_labels = set(norman.obs["condition"].iloc[cells.train].astype(str))
        assert train_labels.isdisjoint(split.test) and "control" in train_labels


def test_additive_split(sim_labels):
    split = split_additive(sim_labels, seed=0)
    split.check_no_leak()
    doubles = [p for p in sim_labels.cat.categories if "+" in p]
    assert len(split.test) == 20 and set(split.test) <= set(doubles)
    singles = [p for p in sim_labels.cat.categories if p != "control" and "+" not in p]
    assert set(singles) <= set(split.train)
    assert set(split.groups.values()) == {"both_singles_seen"}     # the simulator measures every single


def test_additive_split_groups_on_norman(norman):
    split = split_additive(norman.obs["condition"], seed=0)
    split.check_no_leak()
    for p, group in split.groups.items():
        both = all(g in split.train for g in targets_of(p))
        assert group == ("both_singles_seen" if both else "singles_missing")


def test_splits_reproducible_and_seed_dependent(sim_labels):
    assert split_gears(sim_labels, seed=3) == split_gears(sim_labels[::-1], seed=3)
    assert split_gears(sim_labels, seed=3).test != split_gears(sim_labels, seed=4).test
    assert split_additive(sim_labels, seed=3) == split_additive(sim_labels, seed=3)


def test_split_errors():
    with pytest.raises(ValueError, match="needs double perturbations"):
        split_additive(["control", "A", "B"])
    with pytest.raises(ValueError, match="Malformed"):
        split_gears(["control", "A+", "B"])
    with pytest.raises(ValueError, match="gene_holdout_fraction"):
        split_gears(["control", "A", "B"], gene_holdout_fraction=1.5)
    assert targets_of("control") == () and targets_of("A+B") == ("A", "B")
    split = split_gears(["control", "A", "B", "A+B"], seed=0)
    bad = type(split)(train=("A", "A+B"), test=("B", "A+B"), groups={"B": "single_unseen", "A+B": "seen1"},
                      name="gears")
    with pytest.raises(LeakError, match="both parts"):
        bad.check_no_leak()


def test_a_leak_is_found_whatever_the_order_of_the_targets():
    split = split_gears(["control", "A", "B", "A+B"], seed=0)
    swapped = type(split)(train=("A", "B+A"), test=("A+B",), groups={"A+B": "seen2"}, name="gears")
    with pytest.raises(LeakError, match="both parts"):
        swapped.check_no_leak()
    wrong_group = type(split)(train=("A", "B"), test=("A+B",), groups={"A+B": "seen1"}, name="gears")
    with pytest.raises(LeakError, match="2 of its target genes"):
        wrong_group.check_no_leak()
    held_control = type(split)(train=("A",), test=("control",), name="random")
    with pytest.raises(LeakError, match="control is held out"):
        held_control.check_no_leak()


def test_check_no_leak_survives_python_dash_O():
    import subprocess
    import sys
    code = ("from genailab_core.data import PerturbationSplit, LeakError\n"
            "try:\n    PerturbationSplit(train=('A',), test=('A',)).check_no_leak()\n"
            "except LeakError:\n    print('raised')")
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "raised"


def test_one_canonical_label_per_set_of_targets():
    assert canonical_label("B+A") == canonical_label("A+B") == "A+B" == label_of(["B", "A"])
    assert canonical_label("control") == "control" == label_of([])
    assert canonical_labels(["KLF1+CEBPA", "CEBPA", "control"]).tolist() == ["CEBPA+KLF1", "CEBPA", "control"]
    for bad in ["A+", "+A", "A+A", "A +B", "A+control"]:
        with pytest.raises(ValueError):
            canonical_label(bad)
