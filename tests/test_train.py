"""fit(): convergence, KL warm-up, the NaN guard, checkpoints and resume."""
import pytest
import torch

from genailab_core.train import LossOutput, TrainingDiverged, fit, kl_weight_at


class Regression(torch.nn.Module):
    """y = w x + noise, loss = MSE; optionally blows up to test the guard."""

    def __init__(self, explode_at: int | None = None):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.calls, self.explode_at = 0, explode_at

    def loss(self, batch, kl_weight: float = 1.0):
        self.calls += 1
        err = ((self.w * batch["x"] - batch["y"]) ** 2).mean()
        if self.explode_at is not None and self.calls > self.explode_at:
            err = err * float("nan")
        return LossOutput(loss=err, reconstruction=err, kl=torch.tensor(kl_weight))


def batches(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g)
    y = 3.0 * x + 0.01 * torch.randn(n, generator=g)
    return [{"x": x[i:i + 64], "y": y[i:i + 64]} for i in range(0, n, 64)]


def test_fit_converges_and_records_history():
    model = Regression()
    history = fit(model, batches(), batches(seed=1), epochs=60, lr=0.1, progress=False)
    assert abs(float(model.w.detach()) - 3.0) < 0.02
    assert {"epoch", "train_loss", "val_loss", "kl_weight", "seconds"} <= set(history.columns)
    assert history.val_loss.iloc[-1] < history.val_loss.iloc[0]


def test_kl_warmup_is_linear_and_passed_to_loss():
    assert [kl_weight_at(e, 4) for e in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    history = fit(Regression(), batches(), epochs=5, kl_warmup_epochs=4, progress=False)
    assert history.train_kl.tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


def test_divergence_names_step_and_terms():
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 1.*reconstruction=nan"):
        fit(Regression(explode_at=5), batches(), epochs=3, progress=False)


def test_checkpoint_is_not_overwritten_and_resume_continues(tmp_path):
    path = tmp_path / "model.pt"
    fit(Regression(), batches(), epochs=3, lr=0.1, checkpoint=path, progress=False)
    with pytest.raises(FileExistsError, match="resume=True"):
        fit(Regression(), batches(), epochs=3, checkpoint=path, progress=False)
    resumed = Regression()
    history = fit(resumed, batches(), epochs=5, lr=0.1, checkpoint=path, resume=True, progress=False)
    assert history.epoch.tolist() == [1, 2, 3, 4, 5] and resumed.calls == 2 * 4   # only epochs 4-5 trained
    assert not (tmp_path / "model.pt.tmp").exists()


def test_early_stopping_restores_best_weights():
    model = Regression()
    history = fit(model, batches(), batches(seed=1), epochs=200, lr=0.5, patience=3, progress=False)
    assert len(history) < 200
    assert float(history.val_loss.min()) == pytest.approx(float(history.val_loss.iloc[history.val_loss.idxmin()]))
