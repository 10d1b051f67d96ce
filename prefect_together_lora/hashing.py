"""One stable content digest, shared by cache keys, answer keys and fleet model names (kept
apart from :mod:`~prefect_together_lora.caching`, which needs Prefect)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def digest(*parts: Any) -> str:
    """sha256 hex of the parts as canonical JSON (sorted keys, no spaces; str() otherwise)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
