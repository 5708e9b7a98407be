"""The book's models. Each owns ``loss(batch, step=None) -> LossOutput`` and ``sample(...)``."""
from ..data.labels import TargetVocabulary
from .perturbation_baselines import Additive, LinearPCA, NoChange, TrainingMean
from .perturbation_cvae import CVAEPredictor, PerturbationSetEncoder
from .evaluation import heldout_elbo, marginal_log_likelihood, mean_over_batches
from .base import LatentVariableModel, LossOutput, iwae_bound
from .linear_gaussian import LinearGaussianVAE
from .vae import VAE

__all__ = ["VAE", "LatentVariableModel", "LinearGaussianVAE", "LossOutput", "iwae_bound", "Additive", "CVAEPredictor", "LinearPCA", "NoChange",
           "PerturbationSetEncoder", "TargetVocabulary", "TrainingMean", "heldout_elbo", "marginal_log_likelihood",
           "mean_over_batches"]
