"""Training / evaluation / inference / export engine (PaddleClas-style configs, Paddle's own parts).

Entry points: ``tools/{train,eval,infer,export}.py`` -> :func:`paddle_lk.engine.cli.main`.
"""
from .config import ConfigError, DataError, apply_overrides, load_config, validate_config
from .export import export_model
from .infer import predict
from .trainer import Trainer

__all__ = ["ConfigError", "DataError", "load_config", "apply_overrides", "validate_config", "Trainer",
           "export_model", "predict"]
