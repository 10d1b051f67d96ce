"""Shared test setup: an isolated Prefect home, no real Hub or Together, one Prefect harness."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Never reach the real Hub or Together from a test, whatever the developer's shell has set, and
# keep Prefect's files (results, cache records, logs) in a throwaway home the tests can scan.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ.pop("TOGETHER_API_KEY", None)
os.environ.pop("TOGETHER_BASE_URL", None)
os.environ.pop("TOGETHER_LORA_STAGING_URI", None)
# nor write into the user's Hugging Face cache (downloads of test eval sets, say)
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hf-home-")
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


# --- the reliability suite: every case says what it expects and what it saw ----------------------
# `make reliability` runs the tests marked `reliability` with --reliability-table, which prints
# (case, expected, observed, pass) and last `reliability: <passed>/<total> cases`.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-table",
        action="store_true",
        help="print the reliability suite's table of cases after the run",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "reliability(expected): a case of the reliability suite, with its expected outcome",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("reliability")
        if marker is not None and marker.args:
            item.user_properties.append(("expected", str(marker.args[0])))


class Case:
    """What a reliability case expected and what it observed, for the table."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item

    def expect(self, text: str) -> None:
        self._item.user_properties.append(("expected", text))

    def saw(self, text: str) -> None:
        self._item.user_properties.append(("observed", text))


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Case:
    return Case(request.node)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    props = dict(report.user_properties)
    if "expected" not in props:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        observed = props.get("observed") or ("as expected" if report.passed else "")
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = crash.message if crash is not None else str(report.longrepr)
            observed = f"{observed} | {message}" if observed else message
        rows = _RELIABILITY_ROWS
        rows.append((report.nodeid, str(props["expected"]), str(observed), report.passed))


_RELIABILITY_ROWS: list[tuple[str, str, str, bool]] = []


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not config.getoption("--reliability-table"):
        return
    rows = sorted(_RELIABILITY_ROWS)
    write = terminalreporter.write_line
    write("")
    write(f"{'case':<66} {'expected':<30} {'observed':<60} pass")
    for nodeid, expected, observed, passed in rows:
        name = nodeid.split("::", 1)[1] if "::" in nodeid else nodeid
        line = " ".join(observed.split())
        write(f"{name[:66]:<66} {expected[:30]:<30} {line[:60]:<60} {'yes' if passed else 'NO'}")
    write(f"reliability: {sum(1 for r in rows if r[3])}/{len(rows)} cases")
