"""The book's models. Each owns ``loss(batch) -> LossOutput`` and ``sample(...)``."""
from .perturbation import (
    Additive,
    CVAEPredictor,
    LinearPCA,
    NoChange,
    PerturbationSetEncoder,
    TargetVocabulary,
    TrainingMean,
)
from .evaluation import heldout_elbo, marginal_log_likelihood, mean_over_batches
from .vae import VAE, LinearGaussianVAE

__all__ = ["VAE", "LinearGaussianVAE", "Additive", "CVAEPredictor", "LinearPCA", "NoChange",
           "PerturbationSetEncoder", "TargetVocabulary", "TrainingMean", "heldout_elbo", "marginal_log_likelihood",
           "mean_over_batches"]
