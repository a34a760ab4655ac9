"""Analysis tools: the effective receptive field (:mod:`paddle_lk.analysis.erf`)."""
from .erf import (ERF_THRESHOLDS, ERFResult, area_ratio, area_ratios, build_erf_model, compute_erf,
                  erf_model_names, input_gradient_map, load_images, normalize_erf, plot_erf, preprocess,
                  run_erf, sample_images, write_erf_tables)

__all__ = ["ERF_THRESHOLDS", "ERFResult", "area_ratio", "area_ratios", "build_erf_model", "compute_erf",
           "erf_model_names", "input_gradient_map", "load_images", "normalize_erf", "plot_erf", "preprocess",
           "run_erf", "sample_images", "write_erf_tables"]
