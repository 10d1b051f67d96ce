"""Every validation rule, one module per tier, pure (no I/O: they look at an
:class:`~prefect_together_lora.sources.archive.AdapterFiles` and the catalog).

Tiers run in order — layout (S5, S6, F*, H3) → config (C*) → tensors (T1-T8) → base (C8) →
data (T9, optional) — stopping after the first tier with an error but reporting every problem
within a tier at once. Each finding's code, severity and usual fix are registered once in
:mod:`~prefect_together_lora.validation.codes`.
"""

from __future__ import annotations

from prefect_together_lora.validation.codes import ALL_CODES, RULES, UNREADABLE_CODES
from prefect_together_lora.validation.rules.base import check_base_name
from prefect_together_lora.validation.rules.common import (
    RULES_VERSION,
    Findings,
    ValidationOptions,
)
from prefect_together_lora.validation.rules.config import check_config, parse_config
from prefect_together_lora.validation.rules.data import check_data
from prefect_together_lora.validation.rules.layout import check_layout
from prefect_together_lora.validation.rules.tensors import check_tensors, summarize

__all__ = [
    "ALL_CODES",
    "RULES",
    "RULES_VERSION",
    "UNREADABLE_CODES",
    "Findings",
    "ValidationOptions",
    "check_base_name",
    "check_config",
    "check_data",
    "check_layout",
    "check_tensors",
    "parse_config",
    "summarize",
]
