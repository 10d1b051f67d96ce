"""Adapters in the exact PEFT layout for every catalog model and every failure in the rules
table, each with the verdict and codes validation must give."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect_together_lora.testing.adapters import (
    adapter_config,
    lora_tensors,
    write_adapter,
)
from prefect_together_lora.validation.catalog import default_catalog

L8 = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
L70 = "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference"
Q14 = "Qwen/Qwen2.5-14B-Instruct"
Q72 = "Qwen/Qwen2.5-72B-Instruct"
MAV = "meta-llama/Llama-4-Maverick-17B-128E-Instruct"
Q3 = "Qwen/Qwen3-235B-A22B-Instruct-2507-tput"
ALL_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class Case:
    name: str
    base: str
    build: Callable[[Path], Path]
    errors: set[str] = field(default_factory=set)
    warnings: set[str] = field(default_factory=set)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.errors


def model_adapter(base: str, **kw: Any) -> Callable[[Path], Path]:
    kw.setdefault("modules", ALL_MODULES)
    return lambda d: write_adapter(d, base, **kw)


def valid_cases() -> list[Case]:
    """One valid adapter per catalog model (few layers, real dimensions)."""
    layers = {MAV: (0, 1), Q3: (0, 93)}
    return [
        Case(
            f"valid-{spec.display_name}",
            spec.id,
            model_adapter(spec.id, layers=layers.get(spec.id, (0, 1))),
        )
        for spec in default_catalog().models
    ]


def _with_config(base: str = L8, **overrides: Any) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        return write_adapter(d, base, config=adapter_config(base, **overrides))

    return build


def _with_tensors(
    mutate: Callable[[dict], dict], base: str = L8, config: dict | None = None, **kw: Any
) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        tensors = mutate(dict(lora_tensors(base, **kw)))
        return write_adapter(d, base, tensors=tensors, config=config)

    return build


def _raw_weights(data: bytes, base: str = L8) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        folder = write_adapter(d, base)
        (folder / "adapter_model.safetensors").write_bytes(data)
        return folder

    return build


def _rename(mapping: Callable[[str], str], base: str = L8) -> Callable[[dict], dict]:
    return lambda t: {mapping(k): v for k, v in t.items()}


def _edit_files(edit: Callable[[Path], None], base: str = L8) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        folder = write_adapter(d, base)
        edit(folder)
        return folder

    return build


def _header(document: dict, data_len: int) -> bytes:
    raw = json.dumps(document).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(data_len)


def failure_cases() -> list[Case]:
    def first_b_rank16(t: dict) -> dict:
        key = next(k for k in t if k.endswith("lora_B.weight"))
        dtype, shape = t[key]
        return {**t, key: (dtype, [shape[0], 16])}

    def drop_first_b(t: dict) -> dict:
        key = next(k for k in t if k.endswith("lora_B.weight"))
        return {k: v for k, v in t.items() if k != key}

    return [
        # F1 / F2: files
        Case(
            "bin-only",
            L8,
            _edit_files(
                lambda f: (f / "adapter_model.safetensors").rename(f / "adapter_model.bin")
            ),
            {"MISSING_SAFETENSORS"},
        ),
        Case(
            "no-config",
            L8,
            _edit_files(lambda f: (f / "adapter_config.json").unlink()),
            {"MISSING_ADAPTER_CONFIG"},
        ),
        Case(
            "full-model",
            L8,
            _edit_files(
                lambda f: [
                    (f / "adapter_model.safetensors").rename(f / "model.safetensors"),
                    (f / "adapter_config.json").rename(f / "config.json"),
                ]
            ),
            {"NOT_AN_ADAPTER"},
        ),
        Case(
            "merged-next-to-adapter",
            L8,
            _edit_files(lambda f: (f / "config.json").write_text("{}")),
            warnings={"NOT_AN_ADAPTER"},
        ),
        # C1-C9: config
        Case(
            "config-bad-json",
            L8,
            _edit_files(lambda f: (f / "adapter_config.json").write_text('{"r": 8,')),
            {"CONFIG_INVALID_JSON"},
        ),
        Case(
            "config-not-utf8",
            L8,
            _edit_files(lambda f: (f / "adapter_config.json").write_bytes(b'{"r": "\xff"}')),
            {"CONFIG_INVALID_JSON"},
        ),
        Case("ia3", L8, _with_config(peft_type="IA3"), {"UNSUPPORTED_PEFT_TYPE"}),
        Case("missing-fields", L8, _with_config(r=None, lora_alpha=None), {"CONFIG_MISSING_FIELD"}),
        Case("rank-zero", L8, _with_config(r=0), {"RANK_INVALID"}),
        Case("rank-128", L8, model_adapter(L8, rank=128, modules=("q_proj",)), {"RANK_TOO_HIGH"}),
        Case(
            "rank-pattern-too-high",
            L8,
            _with_config(rank_pattern={"q_proj": 256}),
            {"RANK_TOO_HIGH"},
        ),
        Case("seq-cls", L8, _with_config(task_type="SEQ_CLS"), {"UNSUPPORTED_TASK_TYPE"}),
        Case("dora", L8, _with_config(use_dora=True), {"DORA_UNSUPPORTED"}),
        Case(
            "dora-vectors",
            L8,
            _with_tensors(
                lambda t: {
                    **t,
                    "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector": (
                        "BF16",
                        [4096],
                    ),
                }
            ),
            {"DORA_UNSUPPORTED"},
        ),
        Case(
            "modules-to-save",
            L8,
            _with_config(modules_to_save=["lm_head"]),
            {"MODULES_TO_SAVE_UNSUPPORTED"},
        ),
        Case(
            "lm-head-weights",
            L8,
            _with_tensors(
                lambda t: {**t, "base_model.model.lm_head.weight": ("BF16", [128256, 64])}
            ),
            {"MODULES_TO_SAVE_UNSUPPORTED"},
            {"ADAPTER_SIZE_UNEXPECTED"},
        ),
        Case("bias-lora-only", L8, _with_config(bias="lora_only"), {"UNSUPPORTED_LORA_VARIANT"}),
        Case(
            "pissa",
            L8,
            _with_config(init_lora_weights="pissa_niter_4"),
            {"UNSUPPORTED_LORA_VARIANT"},
        ),
        Case("fan-in-fan-out", L8, _with_config(fan_in_fan_out=True), {"UNSUPPORTED_LORA_VARIANT"}),
        Case(
            "target-parameters",
            L8,
            _with_config(target_parameters=["feed_forward.experts.gate_up_proj"]),
            {"UNSUPPORTED_LORA_VARIANT"},
        ),
        Case(
            "target-lm-head",
            L8,
            _with_config(modules=("q_proj", "lm_head")),
            {"TARGET_MODULE_UNSUPPORTED"},
        ),
        Case(
            "target-regex-nothing",
            L8,
            _with_config(target_modules=r".*\.wq$"),
            {"TARGET_MODULE_UNSUPPORTED"},
        ),
        Case(
            "target-regex-catastrophic",
            L8,
            _with_config(target_modules="(a+)+$"),
            {"TARGET_MODULE_UNSUPPORTED"},
        ),
        Case("target-all-linear", L8, _with_config(target_modules="all-linear")),
        Case(
            "other-base-shapes-differ",
            L8,
            model_adapter(Q14),
            {"SHAPE_MISMATCH", "BASE_MODEL_MISMATCH"},
        ),
        Case(
            "other-family-known-model-shapes-fit",
            L8,
            _with_config(base_model_name_or_path="Qwen/Qwen2.5-14B-Instruct"),
            {"BASE_MODEL_MISMATCH"},
        ),
        Case(  # Mistral 7B has Llama 3 8B's exact shapes: only the name tells them apart
            "mistral-id-on-llama-base-shapes-fit",
            L8,
            _with_config(base_model_name_or_path="mistralai/Mistral-7B-Instruct-v0.3"),
            {"BASE_MODEL_MISMATCH"},
        ),
        Case(
            "gemma-id-on-llama-base-shapes-fit",
            L8,
            _with_config(base_model_name_or_path="google/gemma-2-9b-it"),
            {"BASE_MODEL_MISMATCH"},
        ),
        Case(
            "same-family-other-size-shapes-fit",
            L8,
            _with_config(base_model_name_or_path="meta-llama/Meta-Llama-3.1-70B-Instruct"),
            warnings={"BASE_MODEL_MISMATCH"},
        ),
        Case(
            "quantized-mirror-unknown-name",
            L8,
            _with_config(base_model_name_or_path="TheBloke/Llama-3-8B-Instruct-GPTQ"),
            warnings={"BASE_MODEL_ALIAS"},
        ),
        Case(
            "local-path-naming-another-family",
            L8,
            _with_config(base_model_name_or_path="/checkpoints/mistral-7b-sft"),
            warnings={"BASE_MODEL_ALIAS"},
        ),
        Case(
            "alias-unsloth",
            L8,
            _with_config(base_model_name_or_path="unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit"),
        ),
        Case(
            "alias-local-path",
            L8,
            _with_config(base_model_name_or_path="/workspace/models/llama"),
            warnings={"BASE_MODEL_ALIAS"},
        ),
        Case(
            "alias-null",
            L8,
            _with_config(base_model_name_or_path=None),
            warnings={"BASE_MODEL_ALIAS"},
        ),
        Case(
            "unsupported-base",
            "mistralai/Mixtral-8x7B-Instruct-v0.1",
            model_adapter(L8),
            {"BASE_MODEL_UNSUPPORTED"},
        ),
        # T1-T10: tensors
        Case(
            "truncated",
            L8,
            _edit_files(
                lambda f: (f / "adapter_model.safetensors").write_bytes(
                    (f / "adapter_model.safetensors").read_bytes()[:-1000]
                )
            ),
            {"SAFETENSORS_CORRUPT"},
        ),
        Case(
            "header-length-huge",
            L8,
            _raw_weights(struct.pack("<Q", 2**50) + b"{}"),
            {"SAFETENSORS_CORRUPT"},
        ),
        Case(
            "header-not-json",
            L8,
            _raw_weights(struct.pack("<Q", 6) + b"{nope}"),
            {"SAFETENSORS_CORRUPT"},
        ),
        Case(
            "header-overlap",
            L8,
            _raw_weights(
                _header(
                    {
                        "a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
                        "b": {"dtype": "BF16", "shape": [2], "data_offsets": [2, 6]},
                    },
                    6,
                )
            ),
            {"SAFETENSORS_CORRUPT"},
        ),
        Case(
            "header-unknown-dtype",
            L8,
            _raw_weights(
                _header({"a": {"dtype": "Q4_K", "shape": [2], "data_offsets": [0, 4]}}, 4)
            ),
            {"SAFETENSORS_CORRUPT"},
        ),
        Case(
            "empty-adapter",
            L8,
            _raw_weights(_header({"__metadata__": {"format": "pt"}}, 0)),
            {"ADAPTER_EMPTY"},
        ),
        Case(
            "named-adapter-keys",
            L8,
            _with_tensors(_rename(lambda k: k.replace(".weight", ".default.weight"))),
            {"TENSOR_NAME_UNEXPECTED"},
        ),
        Case("missing-lora-b", L8, _with_tensors(drop_first_b), {"TENSOR_NAME_UNEXPECTED"}),
        Case(
            "maverick-wrong-prefix",
            MAV,
            _with_tensors(lambda t: t, base=MAV, prefix="model."),
            {"TENSOR_PREFIX_MISMATCH"},
        ),
        Case(
            "layer-out-of-range",
            L8,
            model_adapter(L8, layers=(0, 40)),
            {"LAYER_INDEX_OUT_OF_RANGE"},
        ),
        Case(
            "layers-to-transform",
            L8,
            _with_config(layers_to_transform=[0]),
            {"LAYER_INDEX_OUT_OF_RANGE"},
        ),
        Case(
            "shape-70b-on-8b",
            L8,
            model_adapter(L70, modules=("q_proj",)),
            {"SHAPE_MISMATCH", "BASE_MODEL_MISMATCH"},
        ),
        Case("dtype-u8", L8, model_adapter(L8, dtype="U8"), {"TENSOR_DTYPE_UNSUPPORTED"}),
        Case(
            "dtype-f32",
            L8,
            model_adapter(L8, dtype="F32", modules=("q_proj",)),
            warnings={"TENSOR_DTYPE_F32"},
        ),
        Case("rank-inconsistent", L8, _with_tensors(first_b_rank16), {"RANK_INCONSISTENT"}),
        Case(
            "zero-lora-b",
            L8,
            model_adapter(L8, fill="zeros", modules=("q_proj",)),
            warnings={"ADAPTER_NOOP"},
            options={"check_data": True},
        ),
        Case(
            "nan-weights",
            L8,
            model_adapter(L8, fill="nan", modules=("q_proj",)),
            {"TENSOR_NOT_FINITE"},
            options={"check_data": True},
        ),
    ]


def catalog_entry(model_id: str, **overrides: Any) -> dict[str, Any]:
    """A catalog entry with Llama-3.1-8B dimensions (for tests that extend the catalog)."""
    entry: dict[str, Any] = {
        "id": model_id,
        "display_name": model_id.rsplit("/", 1)[-1],
        "architecture": "Llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_layers": 32,
        "num_heads": 32,
        "num_kv_heads": 8,
        "head_dim": 128,
        "vocab_size": 128256,
    }
    return {**entry, **overrides}


def codes(report: Any, severity: str) -> set[str]:
    return {f.code for f in report.findings if f.severity == severity}
