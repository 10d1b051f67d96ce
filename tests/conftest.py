"""Shared test setup: offline Hub and a quiet, isolated environment."""

from __future__ import annotations

import os

# Never reach the real Hub or Together from a test, whatever the developer's shell has set.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.pop("TOGETHER_API_KEY", None)
os.environ.pop("TOGETHER_BASE_URL", None)
