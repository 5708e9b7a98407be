"""A CVAE-NB that predicts a perturbation's profile, conditioned on the set of its target genes.

:class:`CVAEPredictor` is chapter 3's conditional VAE with an NB likelihood whose condition is a
learned embedding of the set of target genes (:class:`PerturbationSetEncoder`). It has the
baselines' interface (:mod:`genailab_core.models.perturbation_baselines`): ``fit(pseudobulk, adata)``,
with the training cells (raw counts in ``.X``, obs ``condition``) in ``adata``, and
``predict(labels) -> DataFrame``. Labels ("A+B") reach the networks as padded index tensors
(:class:`~genailab_core.data.labels.TargetVocabulary`).
"""
from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from ..data.labels import CONTROL, TargetVocabulary
from ..data.preprocess import log_normalize_counts
from ..data.simulate import sample_negative_binomial
from ..nn import MLP
from .vae import VAE

TARGET_SUM = 1e4


class PerturbationSetEncoder(nn.Module):
    """A perturbation as a set of target genes, by DeepSets (Zaheer et al. 2017): c = rho(sum_k phi(t_k)).

    For a lookup table the element map phi of DeepSets is the learned gene embedding itself,
    zero-initialized: a gene that never trains stays at the origin, so a perturbation of unseen
    genes is encoded as the control (the empty set, sum 0) and predicted as no change.
    targets: long (batch, max_targets), 0 = padding -> (batch, n_out); order of targets is irrelevant.
    """

    def __init__(self, n_targets: int, n_embed: int = 32, n_out: int = 32, n_hidden: int = 64):
        super().__init__()
        self.n_out = n_out
        self.embedding = nn.Embedding(n_targets + 1, n_embed, padding_idx=0)    # phi: gene -> R^n_embed
        nn.init.zeros_(self.embedding.weight)
        self.rho = MLP(n_embed, n_out, n_hidden, 1, norm=None)

    def forward(self, targets: torch.Tensor) -> torch.Tensor:
        mask = (targets > 0).unsqueeze(-1).to(self.embedding.weight.dtype)       # (batch, k, 1)
        h = (self.embedding(targets) * mask).sum(1)                             # (batch, n_embed) sum pooling
        return self.rho(h)


class _WithTargets:
    """Adds "targets" (B, k) to CountBatches' batches, looked up from their condition codes."""

    def __init__(self, batches, table: torch.Tensor):
        self.batches, self.table = batches, table

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __iter__(self):
        for batch in self.batches:
            batch["targets"] = self.table[batch["condition"]]
            yield batch


class CVAEPredictor:
    """Train a CVAE-NB on the training cells and predict pseudobulk profiles.

    The model is chapter 3's :class:`~genailab_core.models.vae.VAE` with an NB likelihood whose
    condition is the perturbation's set of targets, encoded by :class:`PerturbationSetEncoder`
    and fed to encoder and decoder (Sohn et al. 2015; scVI's decoder, Lopez et al. 2018):

        c = setenc(targets),  q(z | x, c) = N(mu(log1p x, c), sigma^2),  p(z) = N(0, I),
        x_g | z, c ~ NB(l * softmax(f(z, c))_g, theta_g),  l = sum_g x_g.

    A prediction decodes the training control cells under the perturbation and under the control,
    draws NB counts and log-normalizes them with each control cell's library size, as the data
    were; the difference of the two means is the predicted *change*, added to the observed control
    pseudobulk. Predicting the change cancels the decoder's own bias on the control (e.g. from a
    dispersion that is not yet fitted), so a model that learned no effect predicts no change.
    vocabulary: every target gene of the data set (unseen ones included).
    max_cells_per_condition: train on at most this many cells of each condition (None: all), to
    bound the cost on a CPU; the control cells used for predictions are drawn from all of them.
    n_draws: NB draws per prediction (control cells repeated), so its Monte Carlo error is small
    next to the noise of an observed pseudobulk.
    """

    def __init__(self, vocabulary: TargetVocabulary, n_latent: int = 10, n_hidden: int = 128,
                 n_embed: int = 32, epochs: int = 30, lr: float = 2e-3, batch_size: int = 256,
                 kl_warmup_epochs: float = 5, dropout: float = 0.1, seed: int = 0,
                 device: str | torch.device = "cpu", max_control_cells: int = 500,
                 max_cells_per_condition: int | None = None, n_draws: int = 4000):
        self.vocabulary = vocabulary
        self.n_latent, self.n_hidden, self.n_embed, self.dropout = n_latent, n_hidden, n_embed, dropout
        self.epochs, self.lr, self.batch_size, self.kl_warmup = epochs, lr, batch_size, kl_warmup_epochs
        self.seed, self.device, self.max_control_cells = seed, torch.device(device), max_control_cells
        self.max_cells_per_condition, self.n_draws = max_cells_per_condition, n_draws

    def fit(self, pseudobulk: pd.DataFrame, adata: ad.AnnData | None = None, progress: bool = False):
        from ..data.loaders import CountBatches
        from ..train import fit

        if adata is None:
            raise ValueError("CVAEPredictor trains on cells: pass the training AnnData (counts in .X).")
        self.columns = pseudobulk.columns
        if CONTROL not in pseudobulk.index:
            raise ValueError(f"The training pseudobulk has no {CONTROL!r} row; predictions start from it.")
        self.ctrl = pseudobulk.loc[CONTROL].to_numpy()                          # (genes,) observed control
        if list(adata.var_names.astype(str)) != list(self.columns):
            raise ValueError("The training cells' genes differ from the pseudobulk's columns; use the same genes.")
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        batches = CountBatches(self._subsample(adata, rng), batch_size=self.batch_size, condition_keys=["condition"], device=self.device,
                               seed=self.seed)
        self.model = self.new_model(adata.n_vars, kl_warmup_steps=round(self.kl_warmup * len(batches))).to(self.device)
        table = self.vocabulary.encode(list(batches.categories["condition"].astype(str))).to(self.device)
        self.history = fit(self.model, _WithTargets(batches, table), epochs=self.epochs, lr=self.lr,
                           grad_clip=10.0, progress=progress)
        control = adata[adata.obs["condition"].astype(str) == CONTROL]
        if control.n_obs == 0:
            raise ValueError("The training cells contain no control cells; predictions start from them.")
        keep = np.sort(rng.choice(control.n_obs, min(control.n_obs, self.max_control_cells), replace=False))
        control = control[keep]
        self.x_control = torch.as_tensor(sp.csr_matrix(control.X).toarray(), dtype=torch.float32, device=self.device)
        self.norm_library = torch.as_tensor(control.obs["library_size"].to_numpy(dtype=np.float32)
                                            if "library_size" in control.obs else self.x_control.sum(1).cpu().numpy(),
                                            device=self.device)[:, None]       # (cells, 1) for log-normalizing
        return self

    def new_model(self, n_genes: int, kl_warmup_steps: int = 0) -> VAE:
        """The CVAE-NB: a VAE whose condition is the batch's "targets" (B, k), set-encoded."""
        set_encoder = PerturbationSetEncoder(len(self.vocabulary), self.n_embed, self.n_embed, self.n_hidden)
        return VAE(n_genes, self.n_latent, self.n_hidden, likelihood="nb", dropout=self.dropout,
                   condition_keys=["targets"], condition_encoder=set_encoder, kl_warmup_steps=kl_warmup_steps)

    def _subsample(self, adata: ad.AnnData, rng: np.random.Generator) -> ad.AnnData:
        """At most ``max_cells_per_condition`` random cells of each condition (all when None)."""
        if self.max_cells_per_condition is None:
            return adata
        labels = adata.obs["condition"].astype(str).to_numpy()
        keep = [rng.permutation(np.flatnonzero(labels == c))[: self.max_cells_per_condition] for c in pd.unique(labels)]
        return adata[np.sort(np.concatenate(keep))]

    @torch.no_grad()
    def predict(self, labels: Sequence[str]) -> pd.DataFrame:
        """labels: (n,) -> (n, genes) predicted mean log-normalized expression."""
        self.model.eval()
        reference = self._decoded_mean(CONTROL)                                 # (genes,) decoder's control
        rows = [self.ctrl + (self._decoded_mean(str(label)) - reference) for label in labels]  # ctrl + change
        return pd.DataFrame(np.vstack(rows) if rows else np.zeros((0, len(self.columns))), index=list(labels),
                            columns=self.columns)

    @torch.no_grad()
    def _decoded_mean(self, label: str) -> np.ndarray:
        """Mean over the control cells of log1p(1e4 x~ / l), x~ ~ NB(counterfactual under ``label``): (genes,)."""
        rng = np.random.default_rng(self.seed)                                  # same seed: common random numbers
        targets = self.vocabulary.encode([label]).to(self.device).expand(self.x_control.shape[0], -1)
        control = torch.zeros_like(targets)                                     # the empty set: the control's code
        mu = self.model.counterfactual(self.x_control, control, targets).cpu().numpy()  # (cells, genes) NB means
        repeats = max(1, -(-self.n_draws // mu.shape[0]))                         # ceil(n_draws / cells)
        mu = np.tile(mu, (repeats, 1))                                           # (draws, genes)
        counts = sample_negative_binomial(rng, mu, self.model.log_theta.exp().cpu().numpy())  # Gamma-Poisson
        library = np.tile(self.norm_library.cpu().numpy(), (repeats, 1))        # (draws, 1)
        return log_normalize_counts(counts, library.ravel(), TARGET_SUM).mean(0)
