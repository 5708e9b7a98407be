"""Predicting the expression profile of a perturbation: four baselines and a CVAE-NB.

Every predictor has ``fit(pseudobulk, adata=None) -> self`` and ``predict(labels) -> DataFrame``.
``pseudobulk`` is the training table (conditions x genes) of mean log-normalized expression
``mean_c log1p(1e4 x_cg / l_c)``, with a "control" row; ``adata`` holds the training cells
(raw counts in ``.X``, obs ``condition``), used only by the CVAE. Predictions are rows of the
same table for the requested perturbations, so every method is scored the same way.

Baselines, after Ahlmann-Eltze et al. (2025) and GEARS (Roohani et al. 2024):

- :class:`NoChange`: the control profile.
- :class:`TrainingMean`: the mean of the training perturbations.
- :class:`Additive`: ``ctrl + (y_A - ctrl) + (y_B - ctrl)`` from the measured singles.
- :class:`LinearPCA`: Ahlmann-Eltze et al.'s linear model ``Y ~ G W P^T + b`` with PCA embeddings.

and :class:`CVAEPredictor`, chapter 3's conditional VAE with an NB likelihood whose condition is
a learned embedding of the set of target genes (:class:`PerturbationSetEncoder`).
Labels ("A+B") are parsed only in :class:`TargetVocabulary`, the data boundary; the networks
see padded index tensors.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from ..data.preprocess import log_normalize_counts
from ..data.simulate import sample_negative_binomial
from ..data.labels import CONTROL, targets_of
from ..distributions import NegativeBinomial
from ..nn import MLP
from .vae import VAE

TARGET_SUM = 1e4


# -- the data boundary --------------------------------------------------------------------------
class TargetVocabulary:
    """Target gene -> index (1..n; 0 pads), and labels -> padded index tensors.

    genes: every target gene the model may meet (of training *and* test perturbations, so that
    an unseen gene has an embedding row, one that training never updates).
    """

    def __init__(self, genes: Iterable[str], max_targets: int = 2):
        self.genes = sorted(set(genes))
        self.index = {g: i + 1 for i, g in enumerate(self.genes)}
        self.max_targets = max_targets

    @classmethod
    def from_labels(cls, labels: Iterable[str], control: str = CONTROL) -> TargetVocabulary:
        """Vocabulary of every target gene in perturbation labels ("control", "A", "A+B")."""
        names = set(pd.unique(pd.Series(list(labels), dtype=object).astype(str)))
        genes = {g for name in names for g in targets_of(name, control)}
        return cls(genes, max_targets=max([len(targets_of(n, control)) for n in names] + [1]))

    def __len__(self) -> int:
        return len(self.genes)

    def encode(self, labels: Sequence[str], control: str = CONTROL) -> torch.Tensor:
        """labels: (n,) -> long (n, max_targets), 0-padded; "control" is all zeros (the empty set)."""
        out = torch.zeros(len(labels), self.max_targets, dtype=torch.long)
        for row, label in enumerate(labels):
            genes = targets_of(label, control)
            if len(genes) > self.max_targets:
                raise ValueError(f"{label!r} has {len(genes)} targets; this vocabulary allows {self.max_targets}.")
            unknown = [g for g in genes if g not in self.index]
            if unknown:
                raise KeyError(f"Unknown target gene(s) {unknown} in {label!r}; build the vocabulary from every "
                               "perturbation label of the data set (TargetVocabulary.from_labels).")
            out[row, : len(genes)] = torch.tensor([self.index[g] for g in genes])
        return out


def log_normalized(adata: ad.AnnData, library_key: str = "library_size") -> sp.csr_matrix:
    """log1p(1e4 x / l): (cells, genes) CSR, with l from ``obs[library_key]`` (else row sums)."""
    x = sp.csr_matrix(adata.X)
    library = (adata.obs[library_key].to_numpy(dtype=np.float64) if library_key in adata.obs
               else np.asarray(x.sum(1)).ravel())
    if (library <= 0).any():
        raise ValueError(f"{int((library <= 0).sum())} cells have library size <= 0; drop empty cells first.")
    return log_normalize_counts(x, library, TARGET_SUM)


def pseudobulk(adata: ad.AnnData, key: str = "condition", library_key: str = "library_size") -> pd.DataFrame:
    """Mean log-normalized expression per condition: (conditions, genes), conditions as in obs[key]."""
    if key not in adata.obs:
        raise KeyError(f"obs has no column {key!r}; available: {list(adata.obs.columns)}.")
    labels = adata.obs[key].astype(str).to_numpy()
    names = list(pd.unique(labels))
    member = sp.csr_matrix((np.ones(len(labels)), (pd.Index(names).get_indexer(labels), np.arange(len(labels)))),
                           shape=(len(names), len(labels)))                       # (conditions, cells)
    sums = np.asarray((member @ log_normalized(adata, library_key)).todense())   # (conditions, genes)
    means = sums / np.asarray(member.sum(1))
    return pd.DataFrame(means, index=names, columns=adata.var_names.astype(str))


# -- baselines -------------------------------------------------------------------------------------
class _Baseline(ABC):
    """Shared checks: a pseudobulk table with a control row; predictions as a DataFrame."""

    control = CONTROL

    def fit(self, pseudobulk: pd.DataFrame, adata: ad.AnnData | None = None):
        if self.control not in pseudobulk.index:
            raise ValueError(f"The training pseudobulk has no {self.control!r} row; every prediction starts from it.")
        self.table = pseudobulk
        self.ctrl = pseudobulk.loc[self.control].to_numpy()                     # (genes,)
        return self

    def predict(self, labels: Sequence[str]) -> pd.DataFrame:
        rows = np.vstack([self.predict_one(str(label)) for label in labels]) if len(labels) else \
            np.zeros((0, self.table.shape[1]))
        return pd.DataFrame(rows, index=list(labels), columns=self.table.columns)

    @abstractmethod
    def predict_one(self, label: str) -> np.ndarray:
        """The predicted profile (genes,) of one perturbation label."""


class NoChange(_Baseline):
    """Predict the control profile for every perturbation."""

    def predict_one(self, label: str) -> np.ndarray:
        targets_of(label)                                                       # rejects a malformed label
        return self.ctrl


class TrainingMean(_Baseline):
    """Predict the mean profile of the training perturbations (control excluded)."""

    def fit(self, pseudobulk: pd.DataFrame, adata: ad.AnnData | None = None):
        super().fit(pseudobulk, adata)
        rows = pseudobulk.drop(index=self.control)
        self.mean = rows.to_numpy().mean(0) if len(rows) else self.ctrl         # (genes,)
        return self

    def predict_one(self, label: str) -> np.ndarray:
        targets_of(label)                                                       # rejects a malformed label
        return self.mean


class Additive(_Baseline):
    """y_AB = ctrl + (y_A - ctrl) + (y_B - ctrl) (Norman et al. 2019; Ahlmann-Eltze et al. 2025, eq. 1).

    A gene whose single was not measured in training contributes no change; a training
    perturbation is returned as measured.
    """

    def predict_one(self, label: str) -> np.ndarray:
        if label in self.table.index:
            return self.table.loc[label].to_numpy()
        delta = np.zeros_like(self.ctrl)
        for gene in targets_of(label):
            if gene in self.table.index:
                delta += self.table.loc[gene].to_numpy() - self.ctrl             # single effect y_A - ctrl
        return self.ctrl + delta


class LinearPCA(_Baseline):
    """The linear model of Ahlmann-Eltze et al. (2025): Y ~ G W P^T + b, fitted by ridge regression.

    Y (genes, perturbations) is the training pseudobulk and b its row means. G (genes, K) are the
    top K principal axes over genes of Y - b; the perturbations' scores on them, P_train = U S,
    give each training perturbation a K-dim embedding. A perturbation is the sum of its genes'
    embeddings, E (targets, K), solved by ridge from P_train ~ A E (A: perturbation x target
    indicator), so doubles and unseen combinations get one; a gene never trained has a zero
    embedding and is predicted as b. Then (their eq. 2)

        W = (G^T G + lam I)^-1 G^T (Y - b) P (P^T P + lam I)^-1,   y_new = b + G W p_new.
    """

    def __init__(self, n_components: int = 10, ridge: float = 0.1):
        self.n_components, self.ridge = n_components, ridge

    def fit(self, pseudobulk: pd.DataFrame, adata: ad.AnnData | None = None):
        super().fit(pseudobulk, adata)
        labels = list(pseudobulk.index)
        y = pseudobulk.to_numpy().T                                             # (genes, perturbations)
        self.b = y.mean(1)                                                      # (genes,)
        k = max(1, min(self.n_components, len(labels) - 1, y.shape[0]))
        u, s, vt = np.linalg.svd((y - self.b[:, None]).T, full_matrices=False)  # rows: perturbations
        self.G = vt[:k].T                                                       # (genes, K) principal axes
        p_train = u[:, :k] * s[:k]                                              # (perturbations, K) scores
        self.genes = sorted({g for label in labels for g in targets_of(label)})
        a = self._indicator(labels)                                             # (perturbations, targets)
        lam = self.ridge
        self.E = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ p_train)  # (targets, K)
        p = a @ self.E                                                          # (perturbations, K)
        gtg = self.G.T @ self.G + lam * np.eye(k)
        ptp = p.T @ p + lam * np.eye(k)
        self.W = np.linalg.solve(gtg, self.G.T @ (y - self.b[:, None]) @ p) @ np.linalg.inv(ptp)  # (K, K)
        return self

    def _indicator(self, labels: Sequence[str]) -> np.ndarray:
        index = {g: i for i, g in enumerate(self.genes)}
        a = np.zeros((len(labels), len(self.genes)))
        for row, label in enumerate(labels):
            for gene in targets_of(label):
                if gene in index:                                               # unseen gene: no embedding
                    a[row, index[gene]] = 1.0
        return a

    def predict_one(self, label: str) -> np.ndarray:
        p = self._indicator([label]) @ self.E                                   # (1, K)
        return self.b + (self.G @ self.W @ p.T).ravel()                         # y = b + G W p


# -- the CVAE-NB -------------------------------------------------------------------------------------
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
        return np.log1p(TARGET_SUM * counts / library).mean(0)
