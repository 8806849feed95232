"""sklearn_betavae: the beta-VAE as a scikit-learn transformer, built on skorch.

Imports only the core dependencies (scikit-learn, torch, skorch, numpy).
"""

from ._estimator import BetaVAETransformer
from ._loss import BetaVAELoss
from ._masking import mask_to_memmap
from ._pipeline_file import load_pipeline, save_pipeline
from ._version import __version__

__all__ = [
    "BetaVAELoss",
    "BetaVAETransformer",
    "__version__",
    "load_pipeline",
    "mask_to_memmap",
    "save_pipeline",
]
