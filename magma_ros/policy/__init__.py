"""Model backends behind one small interface. torch/transformers are imported lazily."""
from .base import Policy, PolicyConfigError, PolicyError, Prediction, check_image
from .config import BACKEND_NAMES, BACKEND_OPTIONS, BackendConfig
from .registry import create_policy

__all__ = [
    "BACKEND_NAMES", "BACKEND_OPTIONS", "BackendConfig", "Policy", "PolicyConfigError",
    "PolicyError", "Prediction", "check_image", "create_policy",
]
