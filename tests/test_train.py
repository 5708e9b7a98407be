"""fit(): convergence, the step it passes to the model, budgets, schedules, EMA, early stopping,
the divergence guard, checkpoints, and a resumed run that equals an uninterrupted one."""
import math

import numpy as np
import pytest
import torch

from genailab_core.models.base import LossOutput
from genailab_core.train import EMA, CheckpointMismatch, TrainingDiverged, fit, lr_schedule, make_optimizer


class Regression(torch.nn.Module):
    """y = w x (+ dropout noise), loss = MSE; records the steps it is given; can blow up on purpose."""

    def __init__(self, explode_at: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.b = torch.nn.Parameter(torch.zeros(1))
        self.dropout = torch.nn.Dropout(dropout)
        self.steps, self.explode_at = [], explode_at

    def loss(self, batch, step=None):
        self.steps.append(step)
        prediction = self.dropout(self.w * batch["x"]) + self.b
        err = ((prediction - batch["y"]) ** 2).mean()
        if self.explode_at is not None and step is not None and step >= self.explode_at:
            err = err * float("nan")
        return LossOutput(loss=err, terms={"mse": err.detach(), "w": self.w.detach().sum()})


class Shuffled:
    """A loader that shuffles by epoch (as CountBatches does), with ``set_epoch``."""

    def __init__(self, n=256, batch=64, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, generator=g)
        self.y = 3.0 * self.x + 0.5 + 0.01 * torch.randn(n, generator=g)
        self.batch, self.epoch = batch, 0

    def __len__(self):
        return math.ceil(len(self.x) / self.batch)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(100 + self.epoch))
        self.epoch += 1
        for i in range(0, len(order), self.batch):
            index = order[i:i + self.batch]
            yield {"x": self.x[index], "y": self.y[index]}


def test_fit_converges_and_records_history():
    model = Regression()
    history = fit(model, Shuffled(), Shuffled(seed=1), epochs=60, lr=0.1, progress=False)
    assert abs(float(model.w.detach()) - 3.0) < 0.02
    assert {"epoch", "step", "lr", "train_loss", "train_mse", "val_loss", "val_w", "seconds"} <= set(history.columns)
    assert history.step.tolist() == [4 * (e + 1) for e in range(60)]
    assert history.val_loss.iloc[-1] < 0.01 * history.val_loss.iloc[0]


def test_model_gets_the_optimizer_step_in_training_and_none_in_evaluation():
    model = Regression()
    fit(model, Shuffled(), Shuffled(seed=1), epochs=2, progress=False)
    assert model.steps == [0, 1, 2, 3, None, None, None, None, 4, 5, 6, 7, None, None, None, None]


def test_a_step_budget_ends_mid_epoch():
    model = Regression()
    history = fit(model, Shuffled(), steps=10, progress=False)
    assert history.step.tolist() == [4, 8, 10] and model.steps == list(range(10))
    with pytest.raises(ValueError, match="exactly one of epochs= or steps="):
        fit(Regression(), Shuffled(), epochs=2, steps=10, progress=False)


def test_warmup_and_cosine_schedule_match_their_closed_form():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = lr_schedule(optimizer, warmup_steps=4, total_steps=20, schedule="cosine")
    lrs = []
    for _ in range(20):
        lrs.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    expected = [2.0 * (s + 1) / 4 for s in range(4)]
    expected += [2.0 * 0.5 * (1 + math.cos(math.pi * (s - 4) / 16)) for s in range(4, 20)]
    assert lrs == pytest.approx(expected)


def test_optimizer_decays_matrices_only_and_skips_frozen_parameters():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    net[2].requires_grad_(False)                                   # frozen, as a base model under adapters
    optimizer = make_optimizer(net, lr=1e-3, weight_decay=0.1)
    groups = {g["weight_decay"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}
    assert groups[0.1] == {id(net[0].weight)}
    assert groups[0.0] == {id(net[0].bias), id(net[1].weight), id(net[1].bias)}
    with pytest.raises(ValueError, match="no trainable parameter"):
        make_optimizer(torch.nn.Linear(2, 2).requires_grad_(False), lr=1e-3)


def test_frozen_parameters_do_not_move():
    model = Regression()
    model.b.requires_grad_(False)
    fit(model, Shuffled(), epochs=3, lr=0.1, weight_decay=0.5, progress=False)
    assert float(model.b) == 0.0 and float(model.w) != 0.0


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_hook_is_the_exponential_average_of_the_weights_after_each_step(warmup):
    model, decay = Regression(), 0.9
    seen = []
    ema = EMA(model, decay=decay, warmup=warmup)
    fit(model, Shuffled(), epochs=2, lr=0.1, hooks=[ema, lambda m, step: seen.append(float(m.w))], progress=False)
    expected = seen[0]                                             # the first update copies the weights
    for n, w in enumerate(seen[1:], start=1):                      # n earlier updates
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay    # warm-up: 0.2, 0.27, ... then 0.9
        expected = d * expected + (1 - d) * w
    assert float(ema.module.w) == pytest.approx(expected, rel=1e-6)
    assert float(ema.module.w) != pytest.approx(seen[-1], rel=1e-3)


def test_ema_warmup_forgets_the_untrained_weights():
    ema = EMA(Regression(), decay=0.999)
    assert ema.current_decay(1) == pytest.approx(2 / 11) and ema.current_decay(10 ** 6) == 0.999
    share_of_first = np.prod([ema.current_decay(n) for n in range(1, 800)])        # weight left on update 1
    assert share_of_first < 1e-3 < 0.999 ** 799                                     # plain EMA keeps 45%


def test_early_stopping_restores_the_best_weights():
    model = Regression()
    val = list(Shuffled(seed=1))
    history = fit(model, Shuffled(), val, epochs=400, lr=0.9, patience=3, progress=False)
    assert len(history) < 400
    final = sum(float(model.loss(b).loss) * len(b["x"]) for b in val) / 256
    assert final == pytest.approx(history.val_loss.min(), rel=1e-6)
    assert history.val_loss.iloc[-1] > history.val_loss.min()      # the last epoch was not the best


def test_divergence_names_step_and_terms():
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 5.*mse=nan"):
        fit(Regression(explode_at=5), Shuffled(), epochs=3, progress=False)


def test_checkpoint_is_never_overwritten_silently(tmp_path):
    path = tmp_path / "model.pt"
    fit(Regression(), Shuffled(), epochs=2, checkpoint=path, progress=False)
    with pytest.raises(FileExistsError, match="resume=True"):
        fit(Regression(), Shuffled(), epochs=2, checkpoint=path, progress=False)
    assert not (tmp_path / "model.pt.tmp").exists()


def test_resume_from_another_model_is_a_clear_error(tmp_path):
    path = tmp_path / "model.pt"
    fit(Regression(), Shuffled(), epochs=1, checkpoint=path, progress=False)
    other = torch.nn.Module()
    other.v = torch.nn.Parameter(torch.zeros(2))
    other.loss = lambda batch, step=None: LossOutput(other.v.sum())
    with pytest.raises(CheckpointMismatch, match="different model"):
        fit(other, Shuffled(), epochs=2, checkpoint=path, resume=True, progress=False)


class Interrupt(Exception):
    pass


def _run(checkpoint, interrupt_at=None, resume=False):
    torch.manual_seed(0)
    model = Regression(dropout=0.3)
    ema = EMA(model, decay=0.8)
    hooks = [ema]
    if interrupt_at is not None:
        def stop(m, step):
            if step == interrupt_at:
                raise Interrupt
        hooks.append(stop)
    fit(model, Shuffled(), epochs=6, lr=0.05, warmup_steps=3, schedule="cosine", hooks=hooks,
        checkpoint=checkpoint, resume=resume, progress=False)
    return model, ema


def test_an_interrupted_and_resumed_run_gives_the_same_weights(tmp_path):
    straight, straight_ema = _run(tmp_path / "a.pt")
    with pytest.raises(Interrupt):
        _run(tmp_path / "b.pt", interrupt_at=14)                   # dies in epoch 4, after epoch 3's checkpoint
    torch.manual_seed(123)                                         # the resumed process starts from another state
    resumed, resumed_ema = _run(tmp_path / "b.pt", resume=True)
    assert resumed.steps[0] == 12                                  # it continued from the checkpoint
    assert torch.equal(resumed.w, straight.w) and torch.equal(resumed.b, straight.b)
    assert torch.equal(resumed_ema.module.w, straight_ema.module.w)
