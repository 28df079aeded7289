"""How well a scorer works: metrics (SRCC, PRA), classical baselines, evaluation suites with known truth,
and the evaluation runner and report."""

from .evaluate import evaluate, evaluate_many, format_markdown, model_scorer, quick_validation
from .evalsets import SuiteSpec
from .metrics import mean_abs_error, pra, srcc

__all__ = ["SuiteSpec", "evaluate", "evaluate_many", "format_markdown", "mean_abs_error", "model_scorer", "pra",
           "quick_validation", "srcc"]
