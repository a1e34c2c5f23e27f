"""Analysis tools (SPEC §6): error metrics and format comparisons, per-block errors of block
formats, accumulation error growth, reproducibility drift, quantisation-error propagation,
loss sharpness, and
resumable parameter sweeps.

Every analysis returns a small result object with ``to_records()`` / ``to_markdown()`` and a
``plot()`` giving a matplotlib ``Figure``. torch is imported only inside the functions that
take a model (:func:`propagation`, :func:`sharpness`), so this package imports without it.

>>> import fpsim.analysis as fa
>>> fa.format_errors("bf16", [1.0, 3.0]).max_abs
0.0
"""

from .accum_plots import error_growth_models, plot_error_growth
from .block_plots import plot_block_error
from .audit import DeploymentAudit, deployment_audit, deployment_configs, plot_deployment_audit
from .drift import (DriftReport, div_index, drift, drift_configs, flip_rate, greedy_runner,
                    length_std, logit_diff, plot_drift, std_at_acc, top1_prob_std)
from .errors import (DISTRIBUTIONS, ClipSearch, ErrorHistogram, ErrorStats, abs_error, bias,
                     clip_search, error_histogram, error_stats, format_errors, rel_error, sample,
                     sqnr, ulp, ulp_error)
from .format_plots import (FormatComparison, compare_formats, plot_dynamic_range,
                           plot_relative_precision, plot_value_grid)
from .propagation import PropagationReport, plot_propagation, propagation
from .sharpness import METHODS, SharpnessResult, plot_sharpness, sharpness
from .sweep import EXECUTORS, SweepResult, grid, plot_sweep, sweep
from .tables import format_table, rounding_error_summary, to_markdown

__all__ = [
    # tables
    "format_table", "rounding_error_summary", "to_markdown",
    # errors and formats
    "abs_error", "rel_error", "ulp", "ulp_error", "sqnr", "bias", "sample", "DISTRIBUTIONS",
    "ErrorStats", "error_stats", "format_errors", "ErrorHistogram", "error_histogram",
    "ClipSearch", "clip_search", "FormatComparison", "compare_formats", "plot_value_grid",
    "plot_relative_precision", "plot_dynamic_range", "plot_block_error",
    # accumulation
    "error_growth_models", "plot_error_growth",
    # reproducibility drift
    "drift", "DriftReport", "drift_configs", "greedy_runner", "div_index", "std_at_acc", "length_std",
    "top1_prob_std", "logit_diff", "flip_rate", "plot_drift", "deployment_audit", "DeploymentAudit",
    "deployment_configs", "plot_deployment_audit",
    # error propagation and sharpness (need torch when called)
    "propagation", "PropagationReport", "plot_propagation",
    "sharpness", "SharpnessResult", "plot_sharpness", "METHODS",
    # sweeps
    "sweep", "grid", "SweepResult", "plot_sweep", "EXECUTORS",
]
