"""``together-lora validate`` and ``publish``: exit codes and the JSON contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_together_lora.cli import main
from prefect_together_lora.testing.adapters import write_adapter, zip_folder
from tests.adapter_cases import catalog_entry
from tests.helpers import BASE_8B, put_file, raw_presign

# v1 suites run as an account that still has serverless LoRA inference (legacy setting)
pytestmark = pytest.mark.together_emulator(dedicated_only=False)

KEYS = {
    "valid",
    "source",
    "base_model",
    "findings",
    "adapter",
    "bytes_read",
    "requests",
    "fingerprint",
}
ADAPTER_KEYS = {"rank", "alpha", "target_modules", "layers", "dtype", "parameters", "size_bytes"}


def run_cli(*args: str, capsys) -> tuple[int, dict, str]:
    code = main(["validate", *args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_valid_adapter_exit_0_and_exact_json(tmp_path: Path, capsys) -> None:
    folder = write_adapter(tmp_path / "a", BASE_8B)
    code, report, _ = run_cli(str(folder), "--base-model", BASE_8B, capsys=capsys)
    assert code == 0 and report["valid"]
    assert set(report) == KEYS and set(report["adapter"]) == ADAPTER_KEYS
    assert report["adapter"]["rank"] == 8 and report["fingerprint"].startswith("sha256:")


def test_invalid_adapter_exit_1(tmp_path: Path, capsys) -> None:
    folder = write_adapter(tmp_path / "a", BASE_8B, rank=128)
    code, report, _ = run_cli(str(folder), "--base-model", BASE_8B, capsys=capsys)
    assert code == 1 and not report["valid"]
    assert [f["code"] for f in report["findings"] if f["severity"] == "error"] == ["RANK_TOO_HIGH"]
    assert set(report["findings"][0]) == {"code", "severity", "message", "hint"}
    code, report, _ = run_cli(
        str(tmp_path / "a"), "--base-model", BASE_8B, "--max-rank", "256", capsys=capsys
    )
    assert code == 0


def test_unreadable_source_exit_2_with_reason_on_stderr(s3_bucket, capsys) -> None:
    code, report, err = run_cli(
        f"s3://{s3_bucket.bucket}/missing.zip", "--base-model", BASE_8B, capsys=capsys
    )
    assert code == 2 and "does not exist" in err
    assert report["findings"][0]["code"] == "S3_UNREACHABLE"


def test_presigned_url_source_has_query_removed(s3_bucket, tmp_path: Path, capsys) -> None:
    archive = zip_folder(write_adapter(tmp_path / "a", BASE_8B), tmp_path / "a.zip")
    put_file(s3_bucket.client, s3_bucket.bucket, "a.zip", archive)
    url = raw_presign(s3_bucket.client, s3_bucket.bucket, "a.zip")
    code, report, _ = run_cli(url, "--base-model", BASE_8B, capsys=capsys)
    assert code == 0, report["findings"]
    assert "?" not in report["source"] and report["source"].endswith("/a.zip")
    assert report["requests"] <= 4 and report["bytes_read"] <= 256 * 1024
    assert url.split("X-Amz-Signature=")[1] not in json.dumps(report)


def test_custom_catalog_extends_the_bases(tmp_path: Path, capsys) -> None:
    folder = write_adapter(tmp_path / "a", BASE_8B)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps({"models": [catalog_entry("acme/Llama-3.1-8B-Custom", max_rank=4)]})
    )
    code, report, _ = run_cli(
        str(folder),
        "--base-model",
        "acme/Llama-3.1-8B-Custom",
        "--catalog",
        str(catalog),
        capsys=capsys,
    )
    assert code == 1 and "RANK_TOO_HIGH" in [f["code"] for f in report["findings"]]


def test_console_script_and_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "prefect_together_lora.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "validate" in result.stdout
    script = Path(sys.executable).parent / "together-lora"  # the installed console script
    emulator_help = subprocess.run(
        [str(script), "emulator", "--help"], capture_output=True, text=True, check=False
    )
    assert emulator_help.returncode == 0 and "--job-seconds" in emulator_help.stdout
    assert main(["bogus"]) == 2


def publish_args(folder: Path, name: str, bucket: str, *extra: str) -> list[str]:
    """``together-lora publish`` of a local folder, staged in ``bucket``."""
    return [
        "publish",
        str(folder),
        "--base-model",
        BASE_8B,
        "--name",
        name,
        "--staging-uri",
        f"s3://{bucket}/stage",
        *extra,
    ]


@pytest.mark.together_emulator(job_seconds=0.2)
@pytest.mark.parametrize("api", ["v1", "v2"])
def test_publish_command(
    prefect_harness, together_emulator, s3_bucket, tmp_path, monkeypatch, capsys, api
) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", together_emulator.api_key)
    monkeypatch.setenv("TOGETHER_BASE_URL", together_emulator.base_url)
    folder = write_adapter(tmp_path / "a", BASE_8B)
    code = main(
        publish_args(
            folder, "cli-lora", s3_bucket.bucket, "--api", api, "--teardown", "delete", "--json"
        )
    )
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 0, out
    result = json.loads(out)
    assert result["verdict"] == "published" and result["api"] == api
    if api == "v1":
        assert result["model_name"] == "devuser/cli-lora"
    else:
        assert result["model_name"] == "acme-research/cli-lora"
        assert result["inference_model"] == "acme-research/cli-lora"
        assert {r["state"] for r in result["resources"]} <= {"deleted", "detached"}
    bad = main(
        publish_args(folder, "x", s3_bucket.bucket, "--api", api, "--base-model", "acme/unknown")
    )
    assert bad == 1 and "BASE_MODEL_UNSUPPORTED" in capsys.readouterr().err


def test_version_and_help_on_every_option(capsys) -> None:
    from prefect_together_lora import __version__
    from prefect_together_lora.cli import publish_parser, validate_parser

    assert main(["--version"]) == 0 and __version__ in capsys.readouterr().out
    for parser in (validate_parser(), publish_parser()):
        assert [a.dest for a in parser._actions if not a.help] == []
        assert "exit codes" in (parser.epilog or "")


def test_validate_unreachable_s3_is_exit_2_with_one_json_object(monkeypatch, capsys) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code = main(["validate", "s3://bucket/adapter.zip", "--base-model", BASE_8B, "--json"])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    report = json.loads(out)  # exactly one object, even on errors
    assert report["valid"] is False and err.startswith("together-lora:")
    assert "Traceback" not in err


@pytest.mark.together_emulator(job_seconds=0.2)
def test_publish_fails_fast_on_a_wrong_url_before_staging(
    prefect_harness, s3_bucket, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "k")
    monkeypatch.setenv("TOGETHER_BASE_URL", "http://127.0.0.1:9")  # a wrong URL
    folder = write_adapter(tmp_path / "a", BASE_8B)
    code = main(publish_args(folder, "wrong-url", s3_bucket.bucket, "--json"))
    out = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(out)
    assert code == 2 and result["exit_code"] == 2, result
    assert result["failed_step"] == "preflight"
    assert result["error"]["type"] == "TogetherConnectionError"
    staged = s3_bucket.client.list_objects_v2(Bucket=s3_bucket.bucket).get("KeyCount", 0)
    assert staged == 0  # nothing was staged


@pytest.mark.together_emulator(job_seconds=0.2)
def test_publish_gate_failure_says_what_exists_on_together(
    prefect_harness, together_emulator, s3_bucket, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", together_emulator.api_key)
    monkeypatch.setenv("TOGETHER_BASE_URL", together_emulator.base_url)
    eval_set = tmp_path / "e.jsonl"
    eval_set.write_text(json.dumps({"id": "1", "prompt": "hi", "expected": "zzz"}) + "\n")
    folder = write_adapter(tmp_path / "a", BASE_8B)
    code = main(
        publish_args(
            folder,
            "gated-cli",
            s3_bucket.bucket,
            "--eval-set",
            str(eval_set),
            "--min-score",
            "0.99",
            "--json",
        )
    )
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert code == 1 and result["exit_code"] == 1 and result["failed_step"] == "evaluate"
    assert result["model_name"] == "acme-research/gated-cli" and result["model_id"]
    assert {r["kind"]: r["state"] for r in result["resources"]}["deployment"] == "deleted"
    assert "on Together: model acme-research/gated-cli" in captured.err
