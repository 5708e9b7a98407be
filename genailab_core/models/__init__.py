"""The book's models. Each owns ``loss(batch, step=None) -> LossOutput`` and ``sample(...)``."""
from ..data.labels import TargetVocabulary
from .perturbation_baselines import Additive, LinearPCA, NoChange, TrainingMean
from .perturbation_cvae import CVAEPredictor, PerturbationSetEncoder
from .evaluation import heldout_elbo, marginal_log_likelihood, mean_over_batches
from .base import LatentVariableModel, LossOutput, iwae_bound
from .linear_gaussian import LinearGaussianVAE
from .vae import VAE
from .diffusion import Diffusion
from .dit import DiT
from .energy import EnergyModel
from .tokens import GeneTrackTokens, GroupTokens, SetTokens, StepTokens, gene_programs
from .flow import FlowMatching, ot_pairing, straightness
from .latent import LatentGenerator
from .guidance import NoiseAwareClassifier, TimeConditionalClassifier, classifier_guided_eps, classifier_guided_score
from .score import ScoreModel
from .ssm import BidirectionalSSM, DiagonalSSM
from .jepa import JEPA, TargetUpdate, covariance_term, invariance_term, variance_term
from .world_model import RSSM, LatentStates, balanced_kl, check_time_labels, gaussian_kl, time_step_actions
from .lora import LoRALinear, apply_lora, load_lora, load_lora_state_dict, lora_state_dict, merge_lora, save_lora, unmerge_lora
from .adaptation import (BottleneckAdapter, EncoderClassifier, VAEFeatures, add_adapters, choose_preset, detect_hardware,
                         preset)

__all__ = ["VAE", "LatentVariableModel", "LinearGaussianVAE", "LossOutput", "iwae_bound", "Additive", "CVAEPredictor", "LinearPCA", "NoChange",
           "PerturbationSetEncoder", "TargetVocabulary", "TrainingMean", "heldout_elbo", "marginal_log_likelihood",
           "mean_over_batches", "Diffusion", "DiT", "EnergyModel", "LatentGenerator", "GroupTokens", "SetTokens", "gene_programs", "FlowMatching", "ot_pairing", "straightness", "NoiseAwareClassifier",
           "TimeConditionalClassifier", "classifier_guided_eps", "classifier_guided_score", "ScoreModel", "DiagonalSSM",
           "BidirectionalSSM", "GeneTrackTokens", "StepTokens", "RSSM", "LatentStates", "balanced_kl",
           "check_time_labels", "gaussian_kl", "time_step_actions", "LoRALinear", "apply_lora", "load_lora",
           "load_lora_state_dict", "lora_state_dict", "merge_lora", "save_lora", "unmerge_lora", "BottleneckAdapter",
           "EncoderClassifier", "VAEFeatures", "add_adapters", "choose_preset", "detect_hardware", "preset", "JEPA",
           "TargetUpdate", "covariance_term", "invariance_term", "variance_term"]
