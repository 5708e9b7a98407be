"""Benchmark: the book's OT-CFM training step against torchcfm's on the same network, data and batches.

Both sides train a copy of one ``nn.ConditionalMLP`` (same architecture, same initial weights), with the
same optimizer (the package's AdamW, ``optim.make_optimizer``) on the same minibatches of PBMC 3k in PC
space: 2,000 seurat_v3 HVGs chosen on the training cells' counts, log-normalized, 50 PCs fitted on the
training cells (90%) only, scaled by one number so that the mean variance per PC is 1, the scale of the N(0, I)
noise (one factor for all PCs keeps the geometry that the OT cost sees). Each side draws its own noise and
times, as each package does.

- ours: ``FlowMatching(network, coupling="ot").loss(batch)``: the minibatch OT permutation (POT's exact
  ``ot.emd``), t ~ U(0, 1), x_t = (1 - t) x + t eps, target eps - x.
- torchcfm: ``ExactOptimalTransportConditionalFlowMatcher(sigma=0).sample_location_and_conditional_flow(eps, x)``
  with its time running the other way (t_cfm = 0 noise, 1 data): it returns x_t = t_cfm x + (1 - t_cfm) eps,
  which is our x_t at t = 1 - t_cfm, and u_t = x - eps, minus our velocity there. Its network is therefore
  trained on (x_t, 1 - t_cfm) with target -u_t, so that both networks learn the same function v(x, t) of
  our time, and both are scored by one function. The one remaining difference is torchcfm's: it draws the
  batch's pairs i.i.d. from the OT plan, with replacement (some cells twice, some not at all), where ours
  applies the plan's permutation (every cell once).

Reported: the wall time of one training step (pairing, loss, backward, optimizer step) for each, the two
alternating step by step so that both see the same machine load, median after warm-up; their ratio (goal
<= 1); and the CFM loss of both networks on the same held-out pairs (OT-paired held-out cells and noise)
and times, after the same number of steps.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import anndata as ad
import numpy as np
import torch

from .config import seed_everything, set_cpu_threads
from .data import CountBatches, expression_pcs, load_pbmc3k
from .models.flow import FlowMatching, cfm_loss, ot_pairing
from .nn import ConditionalMLP
from .optim import make_optimizer
from .schedules import LinearPath


@dataclass
class FlowBenchSettings:
    steps: int = 600                 # measured training steps of each implementation
    warmup_steps: int = 20           # run before the measured ones and left out of the timing
    batch_size: int = 128
    lr: float = 1e-3
    n_hidden: int = 256
    n_layers: int = 3
    time_dim: int = 128
    n_pcs: int = 50
    n_top_genes: int = 2000
    val_fraction: float = 0.1
    n_val_repeats: int = 4           # noise draws per held-out cell in the validation loss


@dataclass
class FlowBenchResult:
    implementation: str
    steps: int
    median_step_ms: float
    q25_step_ms: float
    q75_step_ms: float
    train_seconds: float             # sum of all steps, warm-up included
    val_cfm_loss: float


def prepare_pcs(settings: FlowBenchSettings, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PBMC 3k in PC space (``data.expression_pcs``): (train: (n_train, n_pcs), val: (n_val, n_pcs)) float32, HVGs
    and PCs fitted on the training cells only, scaled so that the mean variance per PC of the training cells is 1."""
    space = expression_pcs(load_pbmc3k(), n_pcs=settings.n_pcs, n_top_genes=settings.n_top_genes,
                           held_out_fraction=settings.val_fraction, seed=seed)
    return space.train, space.held_out


def training_batches(train: np.ndarray, n_batches: int, batch_size: int, seed: int) -> list[dict]:
    """The first ``n_batches`` full batches ``{"x": (batch_size, n_pcs)}`` of seeded shuffled epochs."""
    loader = CountBatches(ad.AnnData(train), batch_size=batch_size, shuffle=True, seed=seed, drop_last=True)
    batches: list[dict] = []
    while len(batches) < n_batches:
        batches += [{"x": b["x"]} for b in loader]
    return batches[:n_batches]


def validation_pairs(val: np.ndarray, settings: FlowBenchSettings, seed: int) -> list[tuple[torch.Tensor, ...]]:
    """Fixed held-out (x0, x1, t): each repeat shuffles the held-out cells into batches of the training size,
    draws noise and OT-pairs it with them (the pairs OT-CFM trains on), and draws t ~ U(0, 1)."""
    g = torch.Generator().manual_seed(seed + 10_000)
    cells, pairs = torch.from_numpy(val), []
    for _ in range(settings.n_val_repeats):
        order = torch.randperm(len(cells), generator=g)
        for start in range(0, len(cells), settings.batch_size):
            x0 = cells[order[start:start + settings.batch_size]]
            x1 = torch.randn(x0.shape, generator=g)
            pairs.append((x0, x1[ot_pairing(x0, x1, g)], torch.rand(len(x0), generator=g)))
    return pairs


@torch.no_grad()
def validation_loss(network: torch.nn.Module, pairs: list[tuple[torch.Tensor, ...]]) -> float:
    """The CFM loss (``flow.cfm_loss``) of a network of (x, t) in our time on the fixed held-out pairs,
    averaged over cells."""
    network.eval()
    total = sum(float(cfm_loss(network, LinearPath(), x0, x1, t)) * len(x0) for x0, x1, t in pairs)
    network.train()
    return total / sum(len(x0) for x0, _, _ in pairs)


def bench_flow(seed: int = 0, steps: int | None = None, out_dir: str | Path = "bench_results") -> dict:
    """Train both implementations step by step on the same batches, print the comparison, write it as JSON."""
    from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher

    settings = FlowBenchSettings(**({"steps": steps} if steps else {}))
    print(f"torch CPU threads: {set_cpu_threads()} (both implementations; set GENAILAB_THREADS to change)")
    train, val = prepare_pcs(settings, seed)
    print(f"PBMC 3k: {len(train)} training and {len(val)} held-out cells x {train.shape[1]} PCs")
    seed_everything(seed)
    network = ConditionalMLP(settings.n_pcs, settings.n_hidden, settings.n_layers, settings.time_dim)
    peer_network = ConditionalMLP(settings.n_pcs, settings.n_hidden, settings.n_layers, settings.time_dim)
    peer_network.load_state_dict(network.state_dict())                         # same initial weights
    ours = FlowMatching(network, coupling="ot")
    ours_optimizer, peer_optimizer = make_optimizer(ours, settings.lr), make_optimizer(peer_network, settings.lr)
    matcher = ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)

    def ours_step(batch: dict) -> None:
        loss = ours.loss(batch).loss
        ours_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ours_optimizer.step()

    def peer_step(batch: dict) -> None:
        x = batch["x"]
        t_cfm, x_t, u_t = matcher.sample_location_and_conditional_flow(torch.randn_like(x), x)
        loss = (peer_network(x_t, 1 - t_cfm) - (-u_t)).pow(2).mean()         # our time, our velocity
        peer_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        peer_optimizer.step()

    pairs = validation_pairs(val, settings, seed)
    initial = validation_loss(network, pairs)
    batches = training_batches(train, settings.warmup_steps + settings.steps, settings.batch_size, seed)
    seconds = _alternate(ours_step, peer_step, batches)
    results = [_result(name, times, settings, validation_loss(net, pairs))
               for name, times, net in (("genailab_core OT-CFM", seconds[0], network),
                                        ("torchcfm OT-CFM", seconds[1], peer_network))]
    summary = {"step_time_ratio": results[0].median_step_ms / results[1].median_step_ms,
               "val_cfm_loss_difference": results[0].val_cfm_loss - results[1].val_cfm_loss,
               "initial_val_cfm_loss": initial}
    _print(results, summary)
    record = {"settings": asdict(settings), "seed": seed, "threads": torch.get_num_threads(),
              "versions": _versions(), "results": [asdict(r) for r in results], "summary": summary}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"flow_{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"written to {path}")
    return record


def _alternate(first, second, batches: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Seconds of each step of both, on the same batch, the order swapped every step so that neither
    always runs on a warmer cache or a quieter machine."""
    times = np.zeros((2, len(batches)))
    for i, batch in enumerate(batches):
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):
            tic = time.perf_counter()
            (first if k == 0 else second)(batch)
            times[k, i] = time.perf_counter() - tic
    return times[0], times[1]


def _result(name: str, seconds: np.ndarray, settings: FlowBenchSettings, val_loss: float) -> FlowBenchResult:
    measured = seconds[settings.warmup_steps:] * 1000
    q25, median, q75 = np.percentile(measured, [25, 50, 75])
    return FlowBenchResult(name, settings.steps, float(median), float(q25), float(q75), float(seconds.sum()),
                           val_loss)


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {package: version(package) for package in ("torch", "torchcfm", "pot")}


def _print(results: list[FlowBenchResult], summary: dict) -> None:
    print(f"\nCFM loss on the same held-out pairs and times (before training: {summary['initial_val_cfm_loss']:.4f})")
    print(f"{'implementation':<24}{'steps':>7}{'ms/step':>10}{'IQR ms':>16}{'train s':>9}{'val CFM loss':>14}")
    for r in results:
        print(f"{r.implementation:<24}{r.steps:>7}{r.median_step_ms:>10.2f}"
              f"{f'{r.q25_step_ms:.2f}-{r.q75_step_ms:.2f}':>16}{r.train_seconds:>9.1f}{r.val_cfm_loss:>14.4f}")
    print(f"\nstep-time ratio (ours / torchcfm, medians): {summary['step_time_ratio']:.3f}; "
          f"val CFM loss difference (ours - torchcfm): {summary['val_cfm_loss_difference']:+.4f}")
