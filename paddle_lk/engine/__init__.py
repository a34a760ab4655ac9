"""Training / evaluation / inference / export engine (PaddleClas-style configs, Paddle's own parts).

Entry points: ``tools/{train,eval,infer,export}.py`` -> :func:`paddle_lk.engine.cli.main`.
"""
from .config import ConfigError, DataError, apply_overrides, load_config, validate_config

__all__ = ["ConfigError", "DataError", "load_config", "apply_overrides", "validate_config", "Trainer",
           "export_model", "predict"]


def __getattr__(name):
    # Heavy modules load on first use, so `import paddle_lk.engine` stays cheap for config checks.
    if name == "Trainer":
        from .trainer import Trainer
        return Trainer
    if name == "export_model":
        from .export import export_model
        return export_model
    if name == "predict":
        from .infer import predict
        return predict
    raise AttributeError(name)
