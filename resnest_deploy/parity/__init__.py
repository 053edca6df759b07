"""Output parity of artifacts against the eager model, with first-divergence localisation."""

from .engine import ParityOptions, ParityResult, run_parity
from .metrics import PRESETS, ParityMetrics, Tolerances, compare_logits
from .report import default_report_path, render_markdown, write_reports

__all__ = ["PRESETS", "ParityMetrics", "ParityOptions", "ParityResult", "Tolerances", "compare_logits",
           "default_report_path", "render_markdown", "run_parity", "write_reports"]
