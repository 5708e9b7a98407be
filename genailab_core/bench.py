"""Benchmark: the book's NB-VAE against scvi-tools' SCVI on the same split of PBMC 3k.

Both models see the same 2,000 highly variable genes (seurat_v3 on counts, chosen on all cells as in
every earlier run of this benchmark: a choice shared by both models, so it does not favour either), the
same training cells, the same 10% held-out cells, n_latent=10, an NB likelihood with the observed library
size. SCVI keeps its defaults (400 epochs at this size, batch 128, lr 1e-3, KL warm-up over all
epochs); it trains on the whole training split (``train_size=1.0``) so both see the same cells.
Both are scored on the held-out cells with the same estimators: the ELBO and the
importance-sampled marginal log-likelihood with the same number of samples (Burda et al. 2016).
"""
from __future__ import annotations

import json
import time
from importlib import resources
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

from .config import seed_everything, set_cpu_threads
from .data import CountBatches, load_pbmc3k, select_hvg, split_cells
from .metrics import knn_accuracy
from .models.evaluation import heldout_elbo, marginal_log_likelihood
from .models import VAE
from .train import fit


@dataclass
class BenchSettings:
    """The tuned schedule of the package's NB-VAE (the SCVI side keeps its defaults)."""

    epochs: int = 60
    batch_size: int = 128
    lr: float = 2e-3
    kl_warmup_epochs: int = 20
    n_is_samples: int = 1000
    n_latent: int = 10
    n_top_genes: int = 2000
    val_fraction: float = 0.1


@dataclass
class BenchResult:
    model: str
    epochs: int
    train_seconds: float
    seconds_per_epoch: float
    heldout_elbo: float
    heldout_marginal_ll: float
    knn_accuracy: float


def prepare_pbmc(settings: BenchSettings, seed: int):
    """PBMC 3k labelled cells, 2,000 seurat_v3 HVGs on counts, one train/validation split."""
    adata = select_hvg(load_pbmc3k(), n_top_genes=settings.n_top_genes, flavor="seurat_v3")
    split = split_cells(adata.n_obs, val_fraction=settings.val_fraction, seed=seed)
    return adata[split.train].copy(), adata[split.val].copy()


def run_genailab(train, val, settings: BenchSettings, seed: int) -> BenchResult:
    seed_everything(seed)
    tic = time.perf_counter()
    batches = CountBatches(train, batch_size=settings.batch_size, shuffle=True, seed=seed)
    model = VAE(train.n_vars, n_latent=settings.n_latent, likelihood="nb", gene_names=train.var_names,
                kl_warmup_steps=settings.kl_warmup_epochs * len(batches))
    fit(model, batches, epochs=settings.epochs, lr=settings.lr, progress=False)
    seconds = time.perf_counter() - tic
    held_out = CountBatches(val, batch_size=128, shuffle=False)
    every_cell = CountBatches(ad.concat([train, val]), batch_size=512, shuffle=False)
    latent = torch.cat([model.latent(batch["x"]) for batch in every_cell]).numpy()
    return BenchResult("genailab_core NB-VAE", settings.epochs, seconds, seconds / settings.epochs,
                       heldout_elbo(model, held_out, n_repeats=10),
                       marginal_log_likelihood(model, held_out, n_samples=settings.n_is_samples),
                       _knn(latent, train, val))


def run_scvi(train, val, settings: BenchSettings, seed: int) -> BenchResult:
    import scvi
    from scvi.model._utils import get_max_epochs_heuristic

    scvi.settings.seed = seed
    train = train.copy()
    scvi.model.SCVI.setup_anndata(train)
    model = scvi.model.SCVI(train, n_latent=settings.n_latent, gene_likelihood="nb")
    epochs = get_max_epochs_heuristic(train.n_obs)                  # SCVI's default epochs
    tic = time.perf_counter()
    model.train(max_epochs=epochs, train_size=1.0, accelerator="cpu", enable_progress_bar=False)
    seconds = time.perf_counter() - tic
    elbo = float(np.mean([float(model.get_elbo(val)) for _ in range(10)]))
    mll = model.get_marginal_ll(val, n_mc_samples=settings.n_is_samples, return_mean=False)
    latent = np.concatenate([model.get_latent_representation(train), model.get_latent_representation(val)])
    return BenchResult("scvi-tools SCVI", epochs, seconds, seconds / epochs, elbo, float(mll.mean()),
                       _knn(latent, train, val))


def _knn(latent: np.ndarray, train, val) -> float:
    """5-fold kNN (k=15) cell-type accuracy on the latent means of all cells (train then val)."""
    labels = np.concatenate([train.obs["cell_type"].astype(str), val.obs["cell_type"].astype(str)])
    return knn_accuracy(latent, labels, k=15)


def bench_vae(epochs: int | None = None, seed: int = 0, out_dir: str | Path = "bench_results") -> dict:
    """Train both models on the same split, print the comparison and write it as JSON."""
    settings = BenchSettings(**({"epochs": epochs} if epochs else {}))
    print(f"torch CPU threads: {set_cpu_threads()} (both models; set GENAILAB_THREADS to change)")
    train, val = prepare_pbmc(settings, seed)
    print(f"PBMC 3k: {train.n_obs} training and {val.n_obs} held-out cells x {train.n_vars} genes")
    ours = run_genailab(train, val, settings, seed)
    print(f"genailab_core NB-VAE done in {ours.train_seconds:.1f} s")
    peer = run_scvi(train, val, settings, seed)
    print(f"scvi-tools SCVI done in {peer.train_seconds:.1f} s")
    summary = {
        "time_ratio": ours.train_seconds / peer.train_seconds,
        "seconds_per_epoch_ratio": ours.seconds_per_epoch / peer.seconds_per_epoch,
        "marginal_ll_difference_nats": ours.heldout_marginal_ll - peer.heldout_marginal_ll,
        "elbo_difference_nats": ours.heldout_elbo - peer.heldout_elbo,
    }
    _print(ours, peer, summary, settings)
    record = {"settings": asdict(settings), "seed": seed, "threads": torch.get_num_threads(),
              "results": [asdict(ours), asdict(peer)], "summary": summary}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"vae_{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"written to {path}")
    return record


def _print(ours: BenchResult, peer: BenchResult, summary: dict, settings: BenchSettings) -> None:
    print(f"\nheld-out metrics in nats per cell; marginal LL with {settings.n_is_samples} importance samples")
    print(f"{'model':<22}{'epochs':>7}{'train s':>10}{'s/epoch':>9}{'ELBO':>11}{'marginal LL':>13}{'kNN acc':>9}")
    for r in (ours, peer):
        print(f"{r.model:<22}{r.epochs:>7}{r.train_seconds:>10.1f}{r.seconds_per_epoch:>9.3f}"
              f"{r.heldout_elbo:>11.2f}{r.heldout_marginal_ll:>13.2f}{r.knn_accuracy:>9.3f}")
    print(f"\nwall-time ratio (ours / SCVI): {summary['time_ratio']:.3f}; "
          f"per-epoch ratio: {summary['seconds_per_epoch_ratio']:.3f}")
    print(f"marginal LL difference (ours - SCVI): {summary['marginal_ll_difference_nats']:+.2f} nats per cell")


def cached_record(name: str = "bench_vae_cpu") -> dict:
    """A benchmark record shipped with the package (``resources/<name>.json``, written by :func:`bench_vae`
    with the machine and versions added), so that a chapter can show the comparison without re-running it."""
    path = resources.files("genailab_core").joinpath(f"resources/{name}.json")
    if not path.is_file():
        raise FileNotFoundError(f"No cached benchmark {name!r} in genailab_core/resources; run `make bench` "
                                "and copy its JSON from bench_results/ there.")
    return json.loads(path.read_text())


def comparison_table(record: dict) -> pd.DataFrame:
    """One row per model of a :func:`bench_vae` record: epochs, seconds, s/epoch, held-out ELBO and marginal
    LL (nats per cell), kNN accuracy."""
    columns = {"epochs": "epochs", "train_seconds": "training s", "seconds_per_epoch": "s per epoch",
               "heldout_elbo": "held-out ELBO", "heldout_marginal_ll": "held-out marginal LL",
               "knn_accuracy": "kNN accuracy"}
    table = pd.DataFrame(record["results"]).set_index("model")[list(columns)]
    return table.rename(columns=columns)
