"""The book's models. Each owns ``loss(batch) -> LossOutput`` and ``sample(...)``."""
from .vae import VAE

__all__ = ["VAE"]
