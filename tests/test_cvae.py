"""The conditional VAE and the counterfactual metrics of chapter 3 (scGen's protocol)."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from genailab_core.data import CountBatches
from genailab_core.data import log_normalize_counts
from genailab_core.data.simulate import sample_negative_binomial
from genailab_core.metrics import mean_expression_r2, split_half_r2, top_de_genes
from genailab_core.models import VAE
from genailab_core.train import fit

N_EFFECT = 8          # genes 0..7 respond to the condition
FOLD = 4.0            # by a factor of 4, in every cell type


def condition_counts(n_per_group=100, n_genes=60, n_types=3, seed=0):
    """NB counts of cell types x 2 conditions; the condition multiplies genes 0..N_EFFECT-1 by FOLD.

    Returns AnnData: X (cells, genes) counts; obs cell_type ("t0", "t1", ...), condition ("control", "stimulated").
    """
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 1.0, n_genes)
    types = base + np.where(rng.random((n_types, n_genes)) < 0.3, rng.normal(0, 1.5, (n_types, n_genes)), 0.0)
    effect = np.zeros(n_genes)
    effect[:N_EFFECT] = np.log(FOLD)
    x, cell_type, condition = [], [], []
    for t in range(n_types):
        for s, name in enumerate(["control", "stimulated"]):
            eta = types[t] + s * effect
            rho = np.exp(eta) / np.exp(eta).sum()
            mu = rng.lognormal(np.log(800), 0.2, (n_per_group, 1)) * rho           # (cells, genes)
            x.append(sample_negative_binomial(rng, mu, 5.0))                         # NB, theta = 5
            cell_type += [f"t{t}"] * n_per_group
            condition += [name] * n_per_group
    obs = pd.DataFrame({"cell_type": pd.Categorical(cell_type), "condition": pd.Categorical(condition)},
                       index=[f"c{i}" for i in range(len(cell_type))])
    return ad.AnnData(sp.csr_matrix(np.vstack(x).astype(np.float32)), obs=obs)


def cvae(n_genes, likelihood="nb", condition_dim=None, inject="both", n_types=3):
    return VAE(n_genes, n_latent=4, n_hidden=32, likelihood=likelihood, dropout=0.0,
               condition_keys=["cell_type", "condition"], n_conditions=[n_types, 2],
               condition_dim=condition_dim, inject=inject)


def log_profile(counts) -> np.ndarray:
    """log of the mean normalized profile, log mean_n(x_ng / l_n): (cells, genes) -> (genes,).
    Free of Jensen's gap, so decoder means and observed counts can be compared directly."""
    x = np.asarray(counts.toarray() if hasattr(counts, "toarray") else counts, dtype=float)
    return np.log((x / x.sum(1, keepdims=True)).mean(0))


def test_counterfactual_recovers_a_known_condition_effect_better_than_no_change(one_thread):
    torch.manual_seed(0)
    adata = condition_counts(seed=0)
    held = ((adata.obs.cell_type == "t2") & (adata.obs.condition == "stimulated")).to_numpy()
    control = ((adata.obs.cell_type == "t2") & (adata.obs.condition == "control")).to_numpy()
    batches = CountBatches(adata[~held].copy(), batch_size=64, condition_keys=["cell_type", "condition"])
    model = cvae(adata.n_vars)
    model.kl_warmup_steps = 5 * len(batches)
    fit(model, batches, epochs=40, lr=3e-3, progress=False)
    x = torch.as_tensor(adata.X[control].toarray())
    c = torch.tensor([[2, 0]]).expand(len(x), 2)                                   # (t2, control)
    c_new = torch.tensor([[2, 1]]).expand(len(x), 2)                              # (t2, stimulated): never seen
    predicted = log_profile(model.counterfactual(x, c, c_new).numpy())
    real, no_change = log_profile(adata.X[held]), log_profile(x.numpy())
    effect = slice(0, N_EFFECT)
    error = {"cvae": np.mean((predicted - real)[effect] ** 2), "no change": np.mean((no_change - real)[effect] ** 2)}
    assert error["cvae"] < 0.3 * error["no change"], error
    shift, true_shift = (predicted - no_change)[effect].mean(), (real - no_change)[effect].mean()
    assert shift > 0.5 * true_shift > 0, (shift, true_shift)


@pytest.mark.parametrize("likelihood", ["gaussian", "poisson", "nb", "zinb"])
@pytest.mark.parametrize("condition_dim", [None, 3])
def test_each_likelihood_of_the_cvae_trains_one_epoch_with_finite_loss(likelihood, condition_dim, one_thread):
    adata = condition_counts(n_per_group=40)
    adata.layers["log1p"] = sp.csr_matrix(log_normalize_counts(adata.X).astype(np.float32))
    layer = "log1p" if likelihood == "gaussian" else None
    batches = CountBatches(adata, batch_size=64, layer=layer, condition_keys=["cell_type", "condition"])
    model = cvae(adata.n_vars, likelihood=likelihood, condition_dim=condition_dim)
    history = fit(model, batches, batches, epochs=1, progress=False)
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    batch = next(iter(batches))
    out = model.counterfactual(batch["x"], model.conditions(batch), torch.zeros_like(model.conditions(batch)))
    assert out.shape == batch["x"].shape and torch.isfinite(out).all()


def test_unseen_category_code_raises_a_clear_error():
    model = cvae(10)
    x = torch.ones(3, 10)
    for bad in (torch.tensor([[3, 0]] * 3), torch.tensor([[0, -1]] * 3)):            # cell type 3 does not exist
        with pytest.raises(ValueError, match="never saw"):
            model.encode(x, bad)
        with pytest.raises(ValueError, match="never saw"):
            model.counterfactual(x, torch.zeros(3, 2, dtype=torch.long), bad)
    with pytest.raises(ValueError, match="conditional VAE"):
        model.encode(x)                                                             # codes missing altogether


def test_mean_expression_r2_hand_case():
    real = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])                           # gene means 2, 3, 4
    predicted = np.array([[1.0, 3.0, 4.0]])                                         # gene means 1, 3, 4
    # dx = (-1, 0, 1), dy = (-5/3, 1/3, 4/3): cov = 3, var_x = 2, var_y = 42/9 -> r^2 = 9 / (2 * 42/9) = 27/28
    assert mean_expression_r2(real, predicted) == pytest.approx(27 / 28)
    assert mean_expression_r2(real, predicted, genes=[1, 2]) == pytest.approx(1.0)
    assert mean_expression_r2(real, predicted, genes=np.array([False, True, True])) == pytest.approx(1.0)
    assert mean_expression_r2(real, 2 * real + 1) == pytest.approx(1.0)           # scale and offset are free
    with pytest.raises(ValueError, match="genes"):
        mean_expression_r2(real, predicted[:, :2])
    with pytest.raises(ValueError, match="vary"):
        mean_expression_r2(real, np.ones((1, 3)))


def test_split_half_r2_is_the_r2_of_a_perfect_prediction():
    assert split_half_r2(np.tile(np.arange(5.0), (6, 1)), n_splits=3) == (pytest.approx(1.0), pytest.approx(0.0))
    # cells = mu + N(0, 1), 20 cells: the full set's means carry noise 1/20, so the true means mu score
    # R^2 = 1 / (1 + 1/20) = 0.952 against them. Two halves alone correlate at r = 1 / 1.1; their raw
    # R^2 (0.826) would understate the ceiling, and half vs the full set would overstate it.
    rng = np.random.default_rng(0)
    mu = rng.normal(0.0, 1.0, 4000)                                                   # (genes,), var 1
    cells = mu + rng.normal(0.0, 1.0, (20, mu.size))                                  # (20 cells, genes)
    mean, sd = split_half_r2(cells, n_splits=10)
    assert mean == pytest.approx(1 / (1 + 1 / 20), abs=0.01)
    assert mean == pytest.approx(mean_expression_r2(cells, mu[None, :]), abs=0.01)
    assert 0 < sd < 0.01
    with pytest.raises(ValueError, match="at least 4"):
        split_half_r2(cells[:3])


def test_top_de_genes_finds_the_planted_response():
    adata = condition_counts(n_per_group=100)
    adata.layers["log1p"] = log_normalize_counts(adata.X)
    t0 = adata[(adata.obs.cell_type == "t0").to_numpy()].copy()
    top = top_de_genes(t0, "condition", "stimulated", "control", n_genes=N_EFFECT)
    assert set(top) == {str(g) for g in range(N_EFFECT)}
    with pytest.raises(ValueError, match="must contain"):
        top_de_genes(t0, "condition", "stimulated", "placebo")
