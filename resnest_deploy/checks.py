"""One pass/fail record for every check the tool reports: graph contract, Q/DQ rules, parity limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    """One checked line.

    Attributes:
        name: What was checked (a contract line, a rule, a metric).
        passed: The verdict; None for a value that is reported but not judged.
        detail: A short explanation or the measured value against its limit.
        value: The measured value, for checks against a numeric limit.
        limit: The limit it was held to.
    """

    name: str
    passed: bool | None
    detail: str = ""
    value: float | None = None
    limit: float | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "passed": self.passed, "detail": self.detail}
        if self.value is not None or self.limit is not None:
            body.update(value=self.value, limit=self.limit)
        return body


def failures(checks: list[Check] | tuple[Check, ...]) -> list[Check]:
    """The checks whose verdict is a failure (reported-only lines are not failures)."""
    return [c for c in checks if c.passed is False]

