"""JEPA: the EMA target against its closed form after k steps of fit(), VICReg's terms on whitened and collapsed
embeddings, the stop-gradient, the logged terms, and collapse without EMA and VICReg on a small data set."""
import numpy as np
import pytest
import torch

from genailab_core.metrics.embedding import effective_rank
from genailab_core.models.base import LossOutput
from genailab_core.models.jepa import (JEPA, TargetUpdate, covariance_term, invariance_term, variance_term)
from genailab_core.train import fit


class Cells:
    """A loader of fixed count batches (NB counts with 3 cell types), the interface fit() reads."""

    def __init__(self, n=256, genes=40, batch=64, seed=0):
        rng = np.random.default_rng(seed)
        profiles = rng.gamma(0.5, 2.0, size=(3, genes))                         # (types, genes) expression
        types = rng.integers(0, 3, n)
        mean = profiles[types] * rng.lognormal(0.0, 0.3, (n, 1))
        self.x = torch.as_tensor(rng.poisson(rng.gamma(4.0, mean / 4.0)), dtype=torch.float32)
        self.types, self.batch = types, batch

    def __len__(self):
        return len(self.x) // self.batch

    def __iter__(self):
        for start in range(0, len(self) * self.batch, self.batch):
            yield {"x": self.x[start:start + self.batch]}


def params(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("decay", [0.9, 0.5])
def test_ema_target_matches_closed_form_after_k_steps(decay):
    torch.manual_seed(0)
    model = JEPA(40, n_embed=4, n_hidden=16)
    target_0 = params(model.target)
    assert all(torch.equal(a, b) for a, b in zip(target_0, params(model.context)))   # starts as a copy
    history = []                                                                       # theta_j after step j
    k = 7
    fit(model, Cells(), steps=k, lr=1e-2, progress=False,
        hooks=[lambda m, step: history.append(params(m.context)), TargetUpdate(decay)])
    assert len(history) == k
    for i, xi in enumerate(model.target.parameters()):
        # xi_k = m^k xi_0 + (1 - m) sum_{j=1..k} m^(k-j) theta_j
        closed = decay ** k * target_0[i] + (1 - decay) * sum(decay ** (k - j) * history[j - 1][i]
                                                            for j in range(1, k + 1))
        torch.testing.assert_close(xi.detach(), closed, rtol=1e-5, atol=1e-6)
    assert not all(torch.allclose(a, b) for a, b in zip(params(model.target), history[-1]))   # lags the context


def test_target_gets_no_gradient_and_is_not_optimized():
    torch.manual_seed(0)
    model = JEPA(40, n_embed=4, n_hidden=16)
    before = params(model.target)
    fit(model, Cells(), steps=3, lr=1e-2, progress=False)                            # no TargetUpdate hook
    assert all(not p.requires_grad for p in model.target.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, params(model.target)))


def test_shared_target_passes_gradients_through_both_views():
    torch.manual_seed(0)
    x = next(iter(Cells()))
    model = JEPA(40, n_embed=4, n_hidden=16, target="shared", vicreg=False)
    model.loss(x).loss.backward()
    first = next(model.context.parameters()).grad
    assert model.target is None and first is not None and first.abs().sum() > 0
    with pytest.raises(ValueError, match="shared"):
        TargetUpdate(0.9)(model, 1)


def test_vicreg_covariance_zero_for_whitened_positive_for_collapsed():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((512, 8))
    z = z - z.mean(0)
    whitening = np.linalg.inv(np.linalg.cholesky(np.cov(z.T)))
    white = torch.as_tensor(z @ whitening.T, dtype=torch.float64)                     # sample covariance = I
    assert covariance_term(white).item() == pytest.approx(0.0, abs=1e-20)
    assert variance_term(white, gamma=1.0, eps=0.0).item() == pytest.approx(0.0, abs=1e-12)
    u = torch.as_tensor(rng.standard_normal((512, 1)))
    collapsed = u.repeat(1, 8)                                                        # 8 copies of one signal
    var_u = u.var().item()
    assert covariance_term(collapsed).item() == pytest.approx(8 * 7 * var_u ** 2 / 8)  # every off-diagonal = var(u)
    constant = torch.ones(512, 8, dtype=torch.float64)                                # complete collapse
    assert variance_term(constant, gamma=1.0, eps=1e-4).item() == pytest.approx(1 - 1e-2)


def test_invariance_term_is_the_mean_squared_error():
    a, b = torch.randn(10, 3), torch.randn(10, 3)
    assert invariance_term(a, b).item() == pytest.approx(((a - b) ** 2).mean().item())


def test_loss_logs_each_term_and_weights_them():
    torch.manual_seed(0)
    batch = next(iter(Cells()))
    programs = np.arange(40) % 5
    for vicreg in (True, False):
        model = JEPA(40, n_embed=4, n_hidden=16, programs=programs, n_masked=2, vicreg=vicreg,
                     weights=(2.0, 3.0, 5.0))
        torch.manual_seed(1)
        out = model.loss(batch, step=0)
        assert isinstance(out, LossOutput)
        assert set(out.terms) == {"invariance", "variance", "covariance", "embedding_std"}
        t = out.terms
        expected = 3.0 * t["invariance"] + (2.0 * t["variance"] + 5.0 * t["covariance"] if vicreg else 0.0)
        assert out.loss.item() == pytest.approx(float(expected.detach()), rel=1e-6)


def test_views_thin_and_mask():
    torch.manual_seed(0)
    x = Cells().x[:64]
    model = JEPA(40, programs=np.arange(40) % 4, n_masked=1, thin_range=(0.5, 0.5))
    context, masked, target = model.views(x)
    assert torch.equal(masked.sum(1), torch.ones(64))
    assert (context <= x).all() and (target <= x).all() and torch.equal(target, target.round())
    assert abs(target.sum().item() / x.sum().item() - 0.5) < 0.02


@pytest.mark.parametrize("kwargs, match", [
    (dict(target="momentum"), "target"), (dict(thin_range=(0.0, 1.0)), "thin_range"),
    (dict(n_masked=2), "programs="), (dict(programs=np.arange(40) % 3, n_masked=4), "n_masked"),
    (dict(programs=np.arange(39)), "one label per gene")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        JEPA(40, **kwargs)


def train(target, vicreg, seed=0):
    torch.manual_seed(seed)
    data = Cells(n=512)
    model = JEPA(40, n_embed=8, n_hidden=64, target=target, vicreg=vicreg, thin_range=(0.5, 1.0))
    hooks = [TargetUpdate(0.95)] if target == "ema" else []
    fit(model, data, epochs=15, lr=3e-3, hooks=hooks, progress=False)
    return model.embed(data.x)


def test_collapse_without_ema_and_vicreg_and_not_with_both():
    collapsed = train("shared", False)
    healthy = train("ema", True)
    assert collapsed.std(0).mean() < 0.05 * healthy.std(0).mean()                    # everything near one point
    assert effective_rank(healthy) >= 8 / 2                                          # the chapter's criterion


def test_prediction_targets_the_target_encoder_behind_a_stop_gradient():
    torch.manual_seed(0)
    x = next(iter(Cells()))["x"]
    model = JEPA(40, n_embed=4, n_hidden=16, programs=np.arange(40) % 4, n_masked=1, vicreg=False)
    with torch.no_grad():                                                             # target != context
        for p in model.target.parameters():
            p.add_(0.3 * torch.randn_like(p))
    torch.manual_seed(1)
    model.loss({"x": x}).loss.backward()
    ours = [p.grad.clone() for p in model.context.parameters()]
    model.zero_grad()
    torch.manual_seed(1)                                                              # the same views
    context, masked, target = model.views(x)
    s_y = model.target(torch.log1p(target * 1e4 / target.sum(1, keepdim=True).clamp_min(1))).detach()
    prediction = model.predictor(torch.cat([model.encode(context), masked], 1))
    (25.0 * ((prediction - s_y) ** 2).mean()).backward()
    for a, p in zip(ours, model.context.parameters()):
        torch.testing.assert_close(a, p.grad)
