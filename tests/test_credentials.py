"""TogetherCredentials: Prefect's block standards, env loading, URL normalisation."""

from __future__ import annotations

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr, ValidationError

from prefect_together_lora import TogetherCredentials
from prefect_together_lora.client import AsyncTogetherClient, TogetherClient


class TestTogetherCredentialsStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return TogetherCredentials

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # The standard check downloads the logo; CI is offline, so check the file the URL
        # serves from this repository instead: a square PNG within Prefect's size bounds.
        import struct
        from pathlib import Path

        url = str(block._logo_url)
        assert url.startswith("https://") and url.endswith("docs/img/logo.png")
        png = (Path(__file__).parents[1] / "docs" / "img" / "logo.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])
        assert width == height and 46 <= width <= 1000


def test_from_env_and_normalised_base_url(monkeypatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "env-key-123456")
    monkeypatch.setenv("TOGETHER_BASE_URL", "http://127.0.0.1:8765/v1/")
    creds = TogetherCredentials.from_env()
    assert creds.base_url == "http://127.0.0.1:8765"
    assert creds.api_key.get_secret_value() == "env-key-123456"
    assert "env-key" not in repr(creds) and "env-key" not in creds.model_dump_json()
    assert creds.key_id.startswith("key-") and "env-key" not in creds.key_id
    assert isinstance(creds.get_client(), TogetherClient)
    assert isinstance(creds.get_client("async"), AsyncTogetherClient)
    with pytest.raises(ValueError):
        creds.get_client("grpc")  # type: ignore[arg-type]


def test_missing_key_says_how_to_fix(monkeypatch) -> None:
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    with pytest.raises(ValueError, match="TOGETHER_API_KEY"):
        TogetherCredentials.from_env()
    with pytest.raises(ValidationError, match="api_key is empty"):
        TogetherCredentials(api_key=SecretStr("  "))
    with pytest.raises(ValidationError, match="http"):
        TogetherCredentials(api_key=SecretStr("k"), base_url="api.together.xyz")


def test_default_base_url_is_the_real_host() -> None:
    creds = TogetherCredentials(api_key=SecretStr("k"))
    assert creds.base_url == "https://api.together.ai"
    assert creds.inference_host("v2") == "https://api-inference.together.ai"
    assert creds.inference_host("v1") == "https://api.together.ai"
    assert (
        TogetherCredentials(api_key=SecretStr("k")).account_key
        != TogetherCredentials(api_key=SecretStr("k2")).account_key
    )
