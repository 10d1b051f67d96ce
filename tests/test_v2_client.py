"""The plain v2 client and its settings: no Prefect import, hosts kept apart, both error body
shapes, the emulator command's project options."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from prefect_together_lora.errors import ConflictError, InvalidRequestError, error_from_response
from prefect_together_lora.together.settings import inference_url_for, normalize_base_url

BLOCK_PREFECT = """
import sys
class Blocker:
    def find_spec(self, name, path, target=None):
        if name == "prefect" or name.startswith("prefect."):
            raise ImportError("Prefect is blocked in this test: " + name)
sys.meta_path.insert(0, Blocker())
import prefect_together_lora
import prefect_together_lora.client
import prefect_together_lora.together
import prefect_together_lora.together.v1
import prefect_together_lora.together.v2
import prefect_together_lora.polling
import prefect_together_lora.sources
import prefect_together_lora.staging
import prefect_together_lora.validation.validator
import prefect_together_lora.evaluation.runner
import prefect_together_lora.fleet
import prefect_together_lora.publish_result
import prefect_together_lora.cli
assert not [m for m in sys.modules if m == "prefect" or m.startswith("prefect.")]
print("ok")
"""


def test_the_core_imports_no_prefect() -> None:
    """Client, backends, sources, staging, validation, evaluation, fleet scan, results and
    the CLI's entry point: all usable (and fast to import) without Prefect."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_PREFECT], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_hosts() -> None:
    assert normalize_base_url("https://api.together.ai/v2/") == "https://api.together.ai"
    assert inference_url_for("https://api.together.ai", None) == (
        "https://api-inference.together.ai"
    )
    assert inference_url_for("https://api.together.xyz/v1", None) == (
        "https://api-inference.together.ai"
    )
    # an emulator or a proxy serves both, as the 3.x SDK assumes once base_url is overridden
    assert inference_url_for("http://127.0.0.1:8765", None) == "http://127.0.0.1:8765"
    assert inference_url_for("http://a", "http://b/v1") == "http://b"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "standard", "type": "invalid_request_error"}}, "standard"),
        (
            {"code": 6, "message": "rpc", "details": [{"detail": "the detail wins"}]},
            "the detail wins",
        ),
        ({"code": 3, "message": "no details"}, "no details"),
    ],
)
def test_both_error_body_shapes(body, message) -> None:
    response = httpx.Response(409, json=body, request=httpx.Request("PATCH", "http://x/"))
    error = error_from_response(response)
    assert isinstance(error, ConflictError) and isinstance(error, InvalidRequestError)
    assert error.message.startswith(message)


def test_emulator_command_serves_v1_v2_and_whoami() -> None:
    from prefect_together_lora.testing.emulator import run_emulator_process

    with run_emulator_process(
        "--project-id", "proj_team42", "--project-slug", "team", "--job-seconds", "0.2"
    ) as url:
        headers = {"Authorization": "Bearer k"}
        me = httpx.get(f"{url}/v3/whoami", headers=headers).json()
        assert me["project"] == {"id": "proj_team42", "name": "Research", "slug": "team"}
        supported = httpx.get(f"{url}/v2/supported-models", headers=headers).json()
        assert supported["object"] == "list" and supported["data"]
        models = httpx.get(f"{url}/v2/projects/proj_team42/models", headers=headers)
        assert models.status_code == 200 and models.json()["data"] == []
        assert httpx.get(f"{url}/v1/models", headers=headers).status_code == 200
        assert httpx.get(f"{url}/v3/whoami").status_code == 401
