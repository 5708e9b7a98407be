"""genailab_core: the models, data and tools behind the GenAI Lab book."""
from .config import PROFILES, Run, Settings, UnknownProfileError, resolve_profile, seed_everything, setup

__version__ = "0.1.0"
__all__ = ["PROFILES", "Run", "Settings", "UnknownProfileError", "resolve_profile", "seed_everything",
           "setup", "__version__"]
