"""Pytest fixtures for offline tests of Together pipelines (ours and our users').

Registered through the ``pytest11`` entry point, so installing the package makes them available:
``together_emulator`` (a fresh emulator per test; options via
``@pytest.mark.together_emulator(job_seconds=0.5, ...)``), ``local_s3`` (a moto S3 server for
the session), ``s3_bucket`` (a fresh bucket) and ``local_hub`` (a Hub endpoint over a temp dir).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

TEST_API_KEY = "test-together-key-0123456789"
CLOSED_ENDPOINT = "http://127.0.0.1:9"


@dataclass
class EmulatorHandle:
    base_url: str
    admin: Any
    api_key: str = TEST_API_KEY

    def credentials(self, **overrides: Any) -> Any:
        from prefect_together_lora.credentials import TogetherCredentials

        return TogetherCredentials(
            api_key=SecretStr(self.api_key), base_url=self.base_url, **overrides
        )

    def client(self, **options: Any) -> Any:
        from prefect_together_lora.client import TogetherClient

        return TogetherClient(self.api_key, self.base_url, **options)

    def v2_client(self, **options: Any) -> Any:
        from prefect_together_lora.together.v2_client import TogetherV2Client

        return TogetherV2Client(self.api_key, self.base_url, **options)

    def backend(self, api: str = "v2", **options: Any) -> Any:
        from prefect_together_lora.together import make_backend

        return make_backend(api, self.api_key, self.base_url, **options)  # type: ignore[arg-type]


@dataclass
class S3Handle:
    endpoint: str
    client: Any
    bucket: str = ""
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class HubHandle:
    endpoint: str
    root: Path
    hub: Any

    def repo(self, repo_id: str) -> Path:
        path = self.root / repo_id
        path.mkdir(parents=True, exist_ok=True)
        return path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "together_emulator(**options): EmulatorConfig options for together_emulator"
    )
    config.addinivalue_line(
        "markers", "local_hub(private=..., gated=...): access rules for the local_hub fixture"
    )


@pytest.fixture
def together_emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorHandle]:
    from prefect_together_lora.testing.emulator import EmulatorAdmin, run_emulator

    options: dict[str, Any] = {
        "job_seconds": 0.3,
        "deploy_seconds": 0.3,
        "stop_seconds": 0.1,
        "adapter_load_seconds": 0.2,
    }
    # module-level marks first, the test's own last: the closest setting wins
    for marker in reversed(list(request.node.iter_markers("together_emulator"))):
        options.update(marker.kwargs)
    if "hf_endpoint" not in options:
        # Never let a test's Hub source reach huggingface.co: the local Hub when the test has
        # one, else a closed loopback port (the job then fails fast, as offline).
        options["hf_endpoint"] = (
            request.getfixturevalue("local_hub").endpoint
            if "local_hub" in request.fixturenames
            else CLOSED_ENDPOINT
        )
    with run_emulator(**options) as url:
        admin = EmulatorAdmin(url)
        try:
            yield EmulatorHandle(url, admin)
        finally:
            admin.close()


@pytest.fixture(scope="session")
def local_s3() -> Iterator[S3Handle]:
    from prefect_together_lora.testing.s3 import run_s3_server, s3_client, s3_env

    with run_s3_server() as endpoint:
        yield S3Handle(endpoint, s3_client(endpoint), env=s3_env(endpoint))


@pytest.fixture
def s3_bucket(local_s3: S3Handle, monkeypatch: pytest.MonkeyPatch) -> S3Handle:
    """A fresh bucket on the session's S3 server; boto3 env vars point at that server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    local_s3.client.create_bucket(Bucket=name)
    for key, value in local_s3.env.items():
        monkeypatch.setenv(key, value)
    return S3Handle(local_s3.endpoint, local_s3.client, name, local_s3.env)


@pytest.fixture
def local_hub(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[HubHandle]:
    from prefect_together_lora.testing.hub import run_local_hub

    root = tmp_path_factory.mktemp("hub")
    marker = request.node.get_closest_marker("local_hub")
    options = dict(marker.kwargs) if marker is not None else {}
    with run_local_hub(root, **options) as (endpoint, hub):
        yield HubHandle(endpoint, root, hub)
