"""Run reports: one self-contained HTML page (plots embedded) and a Markdown summary per run folder."""

from .page import build_report

__all__ = ["build_report"]
