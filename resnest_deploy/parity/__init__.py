"""Output parity of artifacts against the eager model, with first-divergence localisation."""

from ..lazy import lazy_exports

_NAMES = {
    "ParityOptions": "options", "ParityResult": "engine", "run_parity": "engine",
    "default_report_path": "report", "render_markdown": "report", "write_reports": "report",
    "PRESETS": "tolerances", "Judgement": "tolerances", "Tolerances": "tolerances", "judgement_for": "tolerances",
    "judgement_of": "tolerances",
}
__all__ = sorted(_NAMES)
__getattr__ = lazy_exports(__name__, _NAMES)
