"""Every rule of the table on real-layout adapters read from disk: verdict and codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_together_lora.validation.rules import ValidationOptions
from prefect_together_lora.validation.validator import validate_source
from tests.adapter_cases import Case, codes, failure_cases, valid_cases


@pytest.mark.parametrize("case", valid_cases() + failure_cases(), ids=lambda c: c.name)
def test_rule(case: Case, tmp_path: Path) -> None:
    folder = case.build(tmp_path / "adapter")
    report = validate_source(str(folder), case.base, options=ValidationOptions(**case.options))
    errors, warnings = codes(report, "error"), codes(report, "warning")
    assert report.valid == case.valid, report.findings
    assert case.errors <= errors, report.findings
    assert case.warnings <= warnings, report.findings
    if case.valid:
        assert not errors


def test_tiers_stop_at_the_first_failing_one(tmp_path: Path) -> None:
    from tests.adapter_cases import L8, _with_config

    folder = _with_config(L8, peft_type="IA3", r=512, task_type="SEQ_CLS")(tmp_path / "a")
    (folder / "adapter_model.safetensors").write_bytes(b"garbage")
    report = validate_source(str(folder), L8)
    # every config problem at once, but no tensor-tier finding (that tier never ran)
    assert {"UNSUPPORTED_PEFT_TYPE", "RANK_TOO_HIGH", "UNSUPPORTED_TASK_TYPE"} <= codes(
        report, "error"
    )
    assert "SAFETENSORS_CORRUPT" not in codes(report, "error")


def test_shape_mismatch_names_the_fitting_base(tmp_path: Path) -> None:
    from tests.adapter_cases import L8, Q14, model_adapter

    report = validate_source(str(model_adapter(Q14)(tmp_path / "a")), L8)
    shape = next(f for f in report.findings if f.code == "SHAPE_MISMATCH")
    assert "This adapter matches Qwen2.5-14B-Instruct" in shape.message
    assert "[8, 5120]" in shape.message and "[8, 4096]" in shape.message


def test_summary_describes_the_adapter(tmp_path: Path) -> None:
    from tests.adapter_cases import ALL_MODULES, L8, model_adapter

    report = validate_source(str(model_adapter(L8, rank=16, layers=(0, 1, 2))(tmp_path / "a")), L8)
    adapter = report.adapter
    assert (adapter.rank, adapter.alpha, adapter.layers, adapter.dtype) == (16, 16.0, 3, "BF16")
    assert adapter.target_modules == sorted(ALL_MODULES)
    assert adapter.parameters == 3 * 16 * (8192 + 5120 + 5120 + 8192 + 18432 * 3)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lora_alpha", float("nan")),
        ("lora_alpha", float("inf")),
        ("lora_alpha", -16),
        ("lora_alpha", 0),
        ("lora_alpha", "sixteen"),
        ("target_modules", []),
        ("layers_to_transform", "0"),
    ],
)
def test_config_values_serving_would_choke_on(field, value, tmp_path: Path) -> None:
    import json

    from prefect_together_lora.cli import validation_json
    from tests.adapter_cases import L8, _with_config

    folder = _with_config(L8, **{field: value})(tmp_path / "a")
    report = validate_source(str(folder), L8)
    assert not report.valid and "CONFIG_VALUE_INVALID" in codes(report, "error"), report.findings
    json.dumps(validation_json(report), allow_nan=False)  # never a bare NaN in --json


def test_an_unreadably_long_integer_is_a_finding(tmp_path: Path) -> None:
    from tests.adapter_cases import L8, _with_config

    folder = _with_config(L8)(tmp_path / "a")
    config = (folder / "adapter_config.json").read_text()
    (folder / "adapter_config.json").write_text(config.replace('"r": 8', '"r": 1' + "0" * 5000))
    report = validate_source(str(folder), L8)
    assert "CONFIG_INVALID_JSON" in codes(report, "error")
