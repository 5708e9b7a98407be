"""Perturbation baselines, the CVAE-NB and the benchmark: exact cases, finite training, tidy output."""
import numpy as np
import pandas as pd
import pytest
import torch

import genailab_core as gl
from genailab_core import perturb_bench as pb
from genailab_core.data import (
    InteractionMix,
    simulate_perturbations,
    split_additive,
    split_gears,
)
from genailab_core.data import perturbation_data as pdata
from genailab_core.data.labels import TargetVocabulary
from genailab_core.data.perturbation_data import pseudobulk
from genailab_core.models.perturbation_baselines import Additive, LinearPCA, NoChange, TrainingMean
from genailab_core.models.perturbation_cvae import CVAEPredictor, PerturbationSetEncoder

ADDITIVE_ONLY = InteractionMix(additive=1.0, synergy=0.0, suppression=0.0, epistasis=0.0, neomorphic=0.0)


@pytest.fixture(scope="module")
def additive_screen():
    return simulate_perturbations(n_genes=300, n_single=12, n_double=20, interactions=ADDITIVE_ONLY,
                                  cells_per_condition=150, n_control=600, effect_fraction=0.1, seed=3)


def test_additive_exact_on_additive_ground_truth(additive_screen):
    """On the simulator's true log-frequencies, eta_AB - a = e_A + e_B: the additive baseline is exact."""
    truth = additive_screen.uns["ground_truth"]
    base = truth["gene_baseline"]
    singles, doubles = truth["single_effects"], truth["double_effects"]
    table = pd.concat([pd.DataFrame([base], index=["control"], columns=singles.columns), base + singles])
    predicted = Additive().fit(table).predict(list(doubles.index))
    np.testing.assert_allclose(predicted.to_numpy(), (base + doubles).to_numpy(), atol=1e-12)


def test_additive_beats_no_change_on_additive_counts(additive_screen):
    bulk = pseudobulk(additive_screen)
    doubles = [p for p in bulk.index if "+" in p]
    train = bulk.drop(index=doubles)
    additive, none = Additive().fit(train).predict(doubles), NoChange().fit(train).predict(doubles)
    ctrl = bulk.loc["control"].to_numpy()
    r = [gl.metrics.pearson_delta(additive.loc[p], bulk.loc[p], ctrl) for p in doubles]
    assert np.median(r) > 0.9
    l2 = lambda pred: np.mean([gl.metrics.l2_distance(pred.loc[p], bulk.loc[p]) for p in doubles])
    assert l2(additive) < 0.7 * l2(none)


def test_simple_baselines_hand_case():
    table = pd.DataFrame([[1.0, 1.0], [2.0, 1.0], [1.0, 4.0]], index=["control", "A", "B"], columns=["g1", "g2"])
    assert NoChange().fit(table).predict(["A+B"]).loc["A+B"].tolist() == [1.0, 1.0]
    assert TrainingMean().fit(table).predict(["C"]).loc["C"].tolist() == [1.5, 2.5]
    additive = Additive().fit(table)
    assert additive.predict(["A+B"]).loc["A+B"].tolist() == [2.0, 4.0]          # 1 + 1 + 0, 1 + 0 + 3
    assert additive.predict(["A+C"]).loc["A+C"].tolist() == [2.0, 1.0]          # C unmeasured: no change
    with pytest.raises(ValueError, match="no 'control' row"):
        NoChange().fit(table.drop(index="control"))


def test_linear_pca_reproduces_low_rank_training_data():
    """With K >= rank and ridge -> 0, Y - b = G W P^T is exact on the training perturbations (singles)."""
    rng = np.random.default_rng(0)
    names = ["control"] + [f"G{i}" for i in range(8)]
    y = rng.normal(size=(9, 2)) @ rng.normal(size=(2, 30)) + rng.normal(size=30)   # rank 2 around a mean
    table = pd.DataFrame(y, index=names)
    model = LinearPCA(n_components=2, ridge=1e-10).fit(table)
    np.testing.assert_allclose(model.predict(names[1:]).to_numpy(), y[1:], atol=1e-6)
    # an unseen gene has no embedding: predicted as the training mean b
    np.testing.assert_allclose(model.predict(["NEW"]).loc["NEW"].to_numpy(), y.mean(0), atol=1e-9)


def test_target_vocabulary_and_set_encoder():
    vocab = TargetVocabulary.from_labels(["control", "A", "B", "A+B", "C+A"])
    assert vocab.genes == ["A", "B", "C"] and vocab.max_targets == 2
    codes = vocab.encode(["control", "B", "A+B", "B+A"])
    assert codes.tolist() == [[0, 0], [2, 0], [1, 2], [1, 2]]              # "B+A" is read as "A+B"
    with pytest.raises(KeyError, match="Unknown target gene"):
        vocab.encode(["A+Z"])
    torch.manual_seed(0)
    enc = PerturbationSetEncoder(len(vocab), n_embed=4, n_out=3)
    torch.nn.init.normal_(enc.embedding.weight)
    out = enc(codes)
    assert out.shape == (4, 3)
    swapped = enc(codes[:, [1, 0]])                               # targets in the other slot order
    torch.testing.assert_close(swapped[2], out[2])                # a set: order of targets does not matter
    with torch.no_grad():
        enc.embedding.weight[0].fill_(123.0)                      # padding never contributes
    torch.testing.assert_close(enc(codes)[1], out[1])


def _one_epoch(adata, max_cells=30):
    bulk = pseudobulk(adata)
    vocab = TargetVocabulary.from_labels(bulk.index)
    model = CVAEPredictor(vocab, epochs=1, n_hidden=32, n_latent=4, max_cells_per_condition=max_cells,
                          max_control_cells=50).fit(bulk, adata)
    assert np.isfinite(model.history["train_loss"]).all()
    labels = [p for p in bulk.index if p != "control"][:3]
    prediction = model.predict(labels)
    assert prediction.shape == (3, adata.n_vars) and np.isfinite(prediction.to_numpy()).all()


def test_cvae_one_epoch_simulated(additive_screen):
    _one_epoch(additive_screen)


def test_cvae_one_epoch_norman(norman):
    _one_epoch(norman)


def test_cvae_one_epoch_papalexi(papalexi):
    _one_epoch(papalexi[np.arange(0, papalexi.n_obs, 7)])


def test_cvae_nb_is_a_vae_with_a_set_encoder():
    torch.manual_seed(0)
    vocabulary = TargetVocabulary(["A", "B", "C"])
    model = CVAEPredictor(vocabulary, n_latent=2, n_hidden=16, n_embed=4).new_model(20)
    x = torch.poisson(torch.full((8, 20), 3.0))
    out = model.loss({"x": x, "targets": torch.tensor([[1, 2]] * 4 + [[0, 0]] * 4)})
    assert torch.isfinite(out.loss) and set(out.terms) == {"reconstruction", "kl", "kl_weight"}
    model.eval()
    control, perturbed = torch.zeros(8, 2, dtype=torch.long), torch.tensor([[3, 0]] * 8)
    mu = model.counterfactual(x, control, perturbed)
    assert mu.shape == (8, 20)
    torch.testing.assert_close(mu.sum(-1), x.sum(-1))                 # mu = l * rho, rho sums to 1
    # an untrained (zero) gene embedding encodes as the empty set: the prediction is the control's
    torch.testing.assert_close(mu, model.counterfactual(x, control, control))


def test_condition_encoder_needs_exactly_one_key():
    from genailab_core.models import VAE
    with pytest.raises(ValueError, match="one condition key"):
        VAE(20, condition_keys=["a", "b"], condition_encoder=PerturbationSetEncoder(3, 4, 4, 8))


def test_interaction_mix_from_norman_labels(norman_gi):
    mix = pdata.interaction_mix_from_labels(norman_gi["gi_type_labels"]["gi_type"])
    assert mix.synergy == pytest.approx(30 / 88) and mix.additive == pytest.approx(16 / 88)
    with pytest.raises(ValueError, match="Unknown GI types"):
        pdata.interaction_mix_from_labels(["ADDITIVE", "WEIRD"])


def test_pseudobulk_hand_case():
    import anndata as ad
    x = np.array([[1.0, 0.0], [3.0, 1.0], [0.0, 2.0]])
    obs = pd.DataFrame({"condition": ["A", "control", "A"], "library_size": [1e4, 1e4, 2e4]}, index=["c1", "c2", "c3"])
    bulk = pseudobulk(ad.AnnData(X=x, obs=obs))
    assert list(bulk.index) == ["A", "control"]                  # order of appearance
    expected_a = [(np.log1p(1.0) + np.log1p(0.0)) / 2, (np.log1p(0.0) + np.log1p(1.0)) / 2]
    np.testing.assert_allclose(bulk.loc["A"], expected_a)
    np.testing.assert_allclose(bulk.loc["control"], np.log1p([3.0, 1.0]))


@pytest.fixture(scope="module")
def small_screen():
    adata = simulate_perturbations(n_genes=80, n_single=8, n_double=12, cells_per_condition=20, n_control=60, seed=0)
    truth = adata.uns["ground_truth"]["interactions"]["interaction_type"] == "synergy"
    return pdata.prepare_perturbation_data(adata, "sim", synergy=truth)


def test_benchmark_tidy(small_screen):
    methods = pb.default_methods(cvae={"epochs": 1, "n_hidden": 16, "n_latent": 2, "max_control_cells": 20})
    results = pb.benchmark([small_screen], {"gears": split_gears, "additive": split_additive}, methods, seeds=[0, 1])
    assert set(results.columns) >= {"dataset", "split", "seed", "method", "group", "metric", "value"}
    assert set(results["method"]) == {*methods, pb.NOISE_FLOOR} and set(results["seed"]) == {0, 1}
    assert set(pb.METRICS) <= set(results["metric"])
    summary = pb.summarize(results)
    row = summary[(summary.method == "no change") & (summary.metric == pb.MSE_DE)]
    assert np.allclose(row["mean"], 1.0)                           # no change is the reference of this metric
    disc = summary[(summary.method == "no change") & (summary.metric == pb.DISCRIMINATION)]
    assert disc["mean"].notna().any() and np.allclose(disc["mean"].dropna(), 0.5)   # NaN: a group of one
    # synergy detection comes with the number of labelled test doubles and of positives among them
    syn = results[(results.metric == pb.SYNERGY_N) & (results.method == "additive")]
    pos = results[(results.metric == pb.SYNERGY_POSITIVES) & (results.method == "additive")]
    assert len(syn) == 4 and (pos["value"].to_numpy() <= syn["value"].to_numpy()).all()
    table = pb.format_table(pb.summarize(results, groups=False), [pb.L2, pb.PEARSON_DELTA])
    assert table.shape[1] == 2 and "±" in table.iloc[0, 0]


class _Spy(NoChange):
    """A no-change predictor that records what it was trained on and asked to predict."""

    def __init__(self, log):
        self.log = log

    def fit(self, pseudobulk, adata=None):
        self.log.append({"bulk": set(pseudobulk.index), "cells": set(adata.obs["condition"].astype(str))})
        return super().fit(pseudobulk, adata)

    def predict(self, labels):
        self.log[-1]["test"] = set(labels)
        return super().predict(labels)


def _spy_benchmark(data, splits):
    log = []
    results = pb.benchmark([data], splits, {"spy": lambda d, s: _Spy(log)}, seeds=[0, 1, 2])
    return log, results


def _assert_no_leak(log, results):
    tested = results.dropna(subset=["perturbation"]).groupby(["split", "seed"], sort=False)["perturbation"].agg(set)
    assert len(log) == len(tested)
    for fit, ((split, seed), scored) in zip(log, tested.items()):
        assert fit["test"] == scored, (split, seed)                 # what was scored is what was held out
        assert not fit["test"] & fit["bulk"], f"{split}, seed {seed}: test perturbations in the training pseudobulk"
        assert not fit["test"] & fit["cells"], f"{split}, seed {seed}: test perturbations in the training cells"
        assert "control" in fit["bulk"] and fit["bulk"] == fit["cells"]


def test_benchmark_leak_free(small_screen):
    """No test perturbation of any split and seed reaches a model's training data, pseudobulk or cells."""
    log, results = _spy_benchmark(small_screen, {"gears": split_gears, "additive": split_additive})
    assert len(log) == 6 and all(fit["test"] for fit in log)
    _assert_no_leak(log, results)


def test_benchmark_leak_is_caught(small_screen, monkeypatch):
    """A split that puts a test perturbation in training stops the benchmark (LeakError), and a benchmark
    that fits on every perturbation fails the check of test_benchmark_leak_free."""
    import dataclasses

    from genailab_core.data import LeakError

    def leaky_split(labels, seed=0):
        split = split_additive(labels, seed=seed)
        return dataclasses.replace(split, train=(*split.train, split.test[0]))

    with pytest.raises(LeakError):
        pb.benchmark([small_screen], {"leaky": leaky_split}, {"no change": lambda d, s: NoChange()}, seeds=[0])

    original = pb.run_split

    def run_split_fitting_on_everything(data, split, methods, seed, split_name, genes=None, floor=True):
        def leaky(make):
            def make_leaky(d, s):
                predictor = make(d, s)
                fit = predictor.fit
                predictor.fit = lambda bulk, adata=None: fit(d.pseudobulk, d.adata)   # every perturbation
                return predictor
            return make_leaky
        return original(data, split, {k: leaky(m) for k, m in methods.items()}, seed, split_name, genes, floor)

    monkeypatch.setattr(pb, "run_split", run_split_fitting_on_everything)
    log, results = _spy_benchmark(small_screen, {"additive": split_additive})
    with pytest.raises(AssertionError, match="training pseudobulk"):
        _assert_no_leak(log, results)


def test_training_hvgs_use_training_cells_only(small_screen):
    """The per-split gene selection sees the training cells only: cells of test perturbations can be
    anything without changing the genes."""
    split = split_additive(small_screen.pseudobulk.index, seed=0)
    cells = split.cell_split(small_screen.adata.obs["condition"].astype(str))
    select = pb.training_hvgs(30)
    genes = list(select(small_screen, cells.train))
    scrambled = small_screen.adata.copy()
    rng = np.random.default_rng(0)
    scrambled.X[cells.test] = rng.poisson(50, size=(len(cells.test), scrambled.n_vars))
    data = pdata.PerturbationData(**{**vars(small_screen), "adata": scrambled})
    assert list(select(data, cells.train)) == genes
    assert list(pb.training_hvgs(30, transductive=True)(data, cells.train)) != genes
    restricted = small_screen.restrict(genes)
    assert list(restricted.pseudobulk.columns) == genes and restricted.adata.n_vars == len(genes)
    np.testing.assert_allclose(restricted.pseudobulk.to_numpy(), small_screen.pseudobulk[genes].to_numpy())
    label = split.test[0]                                          # DE genes: the full ranking, restricted
    ranked = [g for g in small_screen.ranking[0][label] if g in set(genes)][:20]
    assert list(restricted.pseudobulk.columns[restricted.de[label]]) == ranked
    results = pb.benchmark([small_screen], {"additive": split_additive}, {"additive": lambda d, s: Additive()},
                           seeds=[0], genes=select)
    l2 = results[(results["metric"] == pb.L2) & (results["method"] == "additive")]   # one finite L2 per test perturbation
    assert sorted(l2["perturbation"]) == sorted(split.test) and np.isfinite(l2["value"]).all()


def test_full_norman_path_on_a_full_layout_copy_of_the_subset(norman, tmp_path):
    """`-p dataset norman2019`: the subset written in scPerturb's layout goes through load_screen,
    the HVG cut (which keeps every measured target gene) and the benchmark."""
    import anndata as ad

    labels = norman.obs["condition"].astype(str).str.replace("+", "_", regex=False)
    obs = pd.DataFrame({"perturbation": pd.Categorical(labels),
                        "nCount_RNA": norman.obs["library_size"].to_numpy(np.float32),
                        "nFeature_RNA": np.ones(norman.n_obs), "perturbation_type": "CRISPR"},
                       index=norman.obs_names)
    ad.AnnData(X=norman.X.copy(), obs=obs, var=pd.DataFrame(index=norman.var_names)).write_h5ad(
        tmp_path / "NormanWeissman2019_filtered.h5ad")
    full = pdata.load_screen("norman2019", max_genes=200, path=tmp_path / "NormanWeissman2019_filtered.h5ad")
    assert list(full.obs["condition"].astype(str)) == list(norman.obs["condition"].astype(str))
    assert 200 <= full.n_vars <= 201 and "TMSB4X" in full.var_names          # HVGs + the measured target
    data = pdata.prepare_perturbation_data(full, "norman2019")
    methods = {k: v for k, v in pb.default_methods().items() if k != "CVAE-NB"}
    results = pb.benchmark([data], {"gears": split_gears}, methods, seeds=[0])
    l2 = results[results["metric"] == pb.L2]
    n_test = len(split_gears(data.pseudobulk.index, seed=0).test)
    assert set(l2["method"]) == {*methods, pb.NOISE_FLOOR} and len(l2) == n_test * (len(methods) + 1)
    assert np.isfinite(l2["value"]).all()                           # the split-half floor too
