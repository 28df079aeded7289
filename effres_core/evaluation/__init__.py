"""How well a scorer works: metrics (SRCC, PRA), classical baselines, evaluation suites with known truth
(``evalsets``), scorers (``scorers``), the runner (``runner``) and the Markdown report (``report``)."""

from .evalsets import SuiteSpec, load_sharp_faces
from .metrics import mean_abs_error, pra, srcc
from .report import format_markdown, jsonable, plot_ratio_vs_factor
from .runner import (
    GroupResult,
    evaluate,
    evaluate_labels,
    evaluate_many,
    quick_validation,
    read_labels,
    run_groups,
    summarize,
)
from .scorers import RatioScorer, baseline_scorers, model_scorer, score_images

__all__ = [
    "GroupResult", "RatioScorer", "SuiteSpec", "baseline_scorers", "evaluate", "evaluate_labels", "evaluate_many",
    "format_markdown", "jsonable", "load_sharp_faces", "mean_abs_error", "model_scorer", "plot_ratio_vs_factor", "pra",
    "quick_validation", "read_labels", "run_groups", "score_images", "srcc", "summarize",
]
