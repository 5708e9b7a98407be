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
from .vae import VAE, LinearGaussianVAE

__all__ = ["VAE", "LinearGaussianVAE", "Additive", "CVAEPredictor", "LinearPCA", "NoChange",
           "PerturbationSetEncoder", "TargetVocabulary", "TrainingMean"]
