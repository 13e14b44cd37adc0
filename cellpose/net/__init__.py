"""The Cellpose 3 network (``CPnet``) and its weight files (names, cache, download, load, save)."""
from .cpnet import CPnet
from .weights import (
    BUILTIN_MODELS,
    BUNDLED_MODELS,
    DEFAULT_BUNDLED_MODEL,
    DownloadError,
    UnknownModelError,
    WeightsFormatError,
    WeightsInfo,
    WeightsUnavailableError,
    cache_dir,
    load_weights,
    model_filename,
    model_url,
    resolve_model,
    save_weights,
)

__all__ = [
    "CPnet", "BUILTIN_MODELS", "BUNDLED_MODELS", "DEFAULT_BUNDLED_MODEL", "DownloadError", "UnknownModelError",
    "WeightsFormatError", "WeightsInfo",
    "WeightsUnavailableError", "cache_dir", "load_weights", "model_filename", "model_url", "resolve_model",
    "save_weights",
]
