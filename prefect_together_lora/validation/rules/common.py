"""What every tier shares: the findings being collected (only registered codes), the
options, and small helpers."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from prefect_together_lora.schemas import Finding, Severity
from prefect_together_lora.validation.codes import RULES

# bump whenever a rule changes what it reports: validation results are cached under it
RULES_VERSION = "2026.11.3"
SUPPORTED_DTYPES = {"F16", "BF16", "F32"}
DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4}
_MAX_LISTED = 5


@dataclass
class ValidationOptions:
    max_rank: int | None = None
    size_tolerance: float = 1.5
    min_url_lifetime_s: int = 100 * 60 + 10 * 60  # Together's 100 min, plus a margin
    check_data: bool = False  # T9: sample lora_B values (reads sample_bytes of weights)
    sample_bytes: int = 1 << 20
    read_deadline_s: float = 15.0  # reading an archive's metadata gives up after this


_NESTED_QUANTIFIER = re.compile(r"\([^()]*[*+][^()]*\)\s*[*+{]")


def safe_regex(pattern: str) -> re.Pattern[str] | None:
    """Compile a user-supplied pattern unless it could backtrack catastrophically."""
    if len(pattern) > 300 or _NESTED_QUANTIFIER.search(pattern):
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None


@dataclass
class Findings:
    items: list[Finding] = field(default_factory=list)

    def add(
        self,
        code: str,
        severity: Severity,
        message: str,
        hint: str | None = None,
        path: str | None = None,
    ) -> None:
        rule = RULES.get(code)
        if rule is None:
            raise ValueError(f"finding code {code!r} is not registered in validation/codes.py")
        if not rule.allows(severity):
            raise ValueError(f"{code} is registered as at most {rule.severity}, not {severity}")
        self.items.append(
            Finding(code=code, severity=severity, message=message, hint=hint or rule.fix, path=path)
        )

    def error(
        self, code: str, message: str, hint: str | None = None, path: str | None = None
    ) -> None:
        self.add(code, "error", message, hint, path)

    def warning(self, code: str, message: str, hint: str | None = None) -> None:
        self.add(code, "warning", message, hint)

    def info(self, code: str, message: str, hint: str | None = None) -> None:
        self.add(code, "info", message, hint)

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.items)


def _names(items: Iterable[str], limit: int = _MAX_LISTED) -> str:
    items = list(items)
    shown = ", ".join(f"'{i}'" for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
