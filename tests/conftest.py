"""Shared test setup: an isolated Prefect home, no real Hub or Together, one Prefect harness."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Never reach the real Hub or Together from a test, whatever the developer's shell has set, and
# keep Prefect's files (results, cache records, logs) in a throwaway home the tests can scan.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ.pop("TOGETHER_API_KEY", None)
os.environ.pop("TOGETHER_BASE_URL", None)
os.environ.pop("TOGETHER_LORA_STAGING_URI", None)
PREFECT_HOME = Path(tempfile.mkdtemp(prefix="prefect-home-"))
os.environ["PREFECT_HOME"] = str(PREFECT_HOME)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[Path]:
    """One Prefect test server for the session; yields its SQLite database path."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        url = PREFECT_SERVER_DATABASE_CONNECTION_URL.value()
        yield Path(str(url).split("///", 1)[1])


@pytest.fixture
def prefect_home() -> Path:
    return PREFECT_HOME
