"""Tier 2, tensors: the safetensors header against the base's dimensions (T1-T8), and
the adapter summary in the report."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from prefect_together_lora.schemas import AdapterSummary
from prefect_together_lora.sources.safetensors import SafetensorsHeader
from prefect_together_lora.validation.catalog import BaseModelSpec, Catalog
from prefect_together_lora.validation.rules.common import (
    _MAX_LISTED,
    SUPPORTED_DTYPES,
    Findings,
    ValidationOptions,
    _names,
    safe_regex,
)
from prefect_together_lora.validation.rules.config import _positive_number

_TENSOR_KEY = re.compile(
    r"^base_model\.model\.(?P<prefix>(?:[\w]+\.)*?)layers\.(?P<layer>\d+)\."
    r"(?P<module>[\w.]+?)\.(?P<kind>lora_A|lora_B)(?P<adapter>\.[\w-]+)?\.weight$"
)


@dataclass
class _Module:
    layer: int
    path: str
    prefix: str
    a: tuple[int, ...] | None = None
    b: tuple[int, ...] | None = None


def _rank_for(config: dict[str, Any], full_name: str) -> int | None:
    pattern = config.get("rank_pattern") or {}
    if isinstance(pattern, dict):
        for key, value in list(pattern.items())[:256]:
            regex = safe_regex(rf"(?:.*\.)?(?:{key})") if isinstance(key, str) else None
            if regex is not None and regex.fullmatch(full_name) and isinstance(value, int):
                return value
    rank = config.get("r")
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else None


def check_tensors(
    header: SafetensorsHeader,
    config: dict[str, Any],
    spec: BaseModelSpec,
    catalog: Catalog,
    options: ValidationOptions,
    out: Findings,
) -> dict[str, Any]:
    """T2-T8, T10 and the shape-aware part of C8. Returns facts for the adapter summary."""
    if not header.tensors:
        size = header.file_size if header.file_size is not None else 8 + header.header_len
        out.error(
            "ADAPTER_EMPTY",
            f"adapter_model.safetensors contains no tensors ({size} "
            "bytes). Saving failed during training (torch.compile / ZeRO-3 / double "
            "get_peft_model_state_dict).",
            "Re-save with model.save_pretrained().",
        )
        return {}
    modules: dict[tuple[str, int, str], _Module] = {}
    unexpected: list[str] = []
    named_adapter: list[str] = []
    full_weights: list[str] = []
    dora: list[str] = []
    bad_dtypes: dict[str, list[str]] = defaultdict(list)
    for name, tensor in header.tensors.items():
        if tensor.dtype not in SUPPORTED_DTYPES:
            bad_dtypes[tensor.dtype].append(name)
        if "lora_magnitude_vector" in name:
            dora.append(name)
            continue
        match = _TENSOR_KEY.match(name)
        if match is None:
            if re.search(r"(lm_head|embed_tokens|score)\.weight$", name) and "lora" not in name:
                full_weights.append(name)
            else:
                unexpected.append(name)
            continue
        if match.group("adapter"):
            named_adapter.append(name)
            continue
        key = (match.group("prefix"), int(match.group("layer")), match.group("module"))
        module = modules.setdefault(key, _Module(key[1], key[2], key[0]))
        if match.group("kind") == "lora_A":
            module.a = tensor.shape
        else:
            module.b = tensor.shape
    for dtype, names in bad_dtypes.items():
        out.error(
            "TENSOR_DTYPE_UNSUPPORTED",
            f"tensor dtype {dtype} ({len(names)} tensors, e.g. "
            f"'{names[0]}') suggests a quantized adapter.",
            "Save LoRA weights in bf16/fp16/fp32.",
        )
    if any(t.dtype == "F32" for t in header.tensors.values()):
        out.warning(
            "TENSOR_DTYPE_F32",
            "LoRA tensors are F32: twice the size of bf16 with no benefit at inference.",
            "Save in bf16 to halve the upload.",
        )
    if dora:
        out.error(
            "DORA_UNSUPPORTED",
            f"DoRA magnitude vectors found (e.g. '{dora[0]}').",
            "Retrain without DoRA or merge it into the base.",
        )
    if full_weights:
        out.error(
            "MODULES_TO_SAVE_UNSUPPORTED",
            f"full layer weights stored: "
            f"{_names(full_weights)}; multi-LoRA serving cannot load them.",
            "Retrain without modules_to_save and save without embedding layers "
            "(save_embedding_layers=False).",
        )
    for name in named_adapter[:1]:
        out.error(
            "TENSOR_NAME_UNEXPECTED",
            f"Unexpected tensor '{name}' (adapter name in key: "
            "save with save_pretrained, not state_dict).",
            f"{len(named_adapter)} tensors have an adapter name in their key.",
        )
    if unexpected:
        out.error(
            "TENSOR_NAME_UNEXPECTED",
            f"Unexpected tensor names: {_names(unexpected)} "
            "(expected base_model.model.<prefix>layers.N.<block>.<proj>.lora_A/B.weight).",
        )

    prefixes = sorted({m.prefix for m in modules.values()})
    for prefix in prefixes:
        if prefix != spec.tensor_prefix:
            out.error(
                "TENSOR_PREFIX_MISMATCH",
                f"Tensor paths start with '{prefix}layers' but {spec.display_name} expects "
                f"'{spec.tensor_prefix}layers'; the adapter would be ignored at inference.",
                "Train against the same model class Together serves (or rename the keys).",
            )

    layers_allowed = config.get("layers_to_transform")
    if isinstance(layers_allowed, int):
        layers_allowed = [layers_allowed]
    out_of_range = sorted({m.layer for m in modules.values() if m.layer >= spec.num_layers})
    if out_of_range:
        out.error(
            "LAYER_INDEX_OUT_OF_RANGE",
            f"Found layers.{out_of_range[-1]} but the base "
            f"model has {spec.num_layers} layers; adapter was trained on a different model.",
        )
    if isinstance(layers_allowed, list) and layers_allowed:
        stray = sorted({m.layer for m in modules.values()} - set(layers_allowed))
        if stray:
            out.error(
                "LAYER_INDEX_OUT_OF_RANGE",
                f"layers {stray[:_MAX_LISTED]} have tensors but "
                f"layers_to_transform is {layers_allowed[:_MAX_LISTED]}.",
            )

    shape_errors: list[str] = []
    rank_errors: list[str] = []
    for module in sorted(modules.values(), key=_module_order):
        where = f"layers.{module.layer}.{module.path}"
        if module.a is None or module.b is None:
            which = "lora_B" if module.a is not None else "lora_A"
            out.error(
                "TENSOR_NAME_UNEXPECTED",
                f"{where} has no {which}.",
                "Every lora_A needs its lora_B; the file is incomplete.",
            )
            continue
        if len(module.a) != 2 or len(module.b) != 2:
            shape_errors.append(
                f"{where} lora tensors are not 2-D ({list(module.a)}, {list(module.b)})"
            )
            continue
        if module.layer >= spec.num_layers:
            continue
        dims = spec.module_dims(module.path, module.layer)
        if dims is None:
            out.error(
                "TENSOR_NAME_UNEXPECTED",
                f"{where} is not a LoRA-able module of {spec.display_name} at that layer.",
                "The adapter was trained on a different architecture.",
            )
            continue
        fan_in, fan_out = dims
        rank = _rank_for(config, f"{spec.tensor_prefix}layers.{module.layer}.{module.path}")
        if module.a[1] != fan_in:
            shape_errors.append(
                f"{where}.lora_A is {list(module.a)}; {spec.display_name} "
                f"expects [{module.a[0]}, {fan_in}]"
            )
        if module.b[0] != fan_out:
            shape_errors.append(
                f"{where}.lora_B is {list(module.b)}; {spec.display_name} "
                f"expects [{fan_out}, {module.b[1]}]"
            )
        if module.a[0] != module.b[1] or (rank is not None and module.a[0] != rank):
            rank_errors.append(
                f"{where} lora_A rank {module.a[0]}, lora_B rank {module.b[1]}, config r {rank}"
            )
    if shape_errors:
        fits = suggest_base(modules, catalog, exclude=spec.id)
        suffix = f" This adapter matches {fits}." if fits else ""
        out.error(
            "SHAPE_MISMATCH",
            f"{shape_errors[0]}.{suffix}",
            f"{len(shape_errors)} tensor shape(s) do not fit {spec.id}: choose the base the "
            "adapter was trained on."
            + (f" ({len(shape_errors) - 1} more)" if len(shape_errors) > 1 else ""),
        )
    for message in rank_errors[:_MAX_LISTED]:
        out.error(
            "RANK_INCONSISTENT",
            f"{message}.",
            "The file and config disagree; re-save the adapter with save_pretrained().",
        )

    parameters = header.parameters
    lora_bytes = sum(t.end - t.begin for n, t in header.tensors.items() if _TENSOR_KEY.match(n))
    if (
        header.file_size
        and lora_bytes
        and header.file_size > options.size_tolerance * lora_bytes + (1 << 20)
    ):
        out.warning(
            "ADAPTER_SIZE_UNEXPECTED",
            f"adapter is {header.file_size:,} bytes; the LoRA "
            f"tensors account for ~{lora_bytes:,} (embedded embed_tokens/lm_head?).",
        )
    return {
        "layers": len({m.layer for m in modules.values()}),
        "parameters": parameters,
        "dtype": ",".join(sorted({t.dtype for t in header.tensors.values()})),
        "shapes_fit": not shape_errors and not rank_errors,
        "modules": modules,
    }


_CANONICAL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _module_order(module: _Module) -> tuple[int, int, str]:
    """Layer, then q/k/v/o/gate/up/down order: the first message names the attention."""
    proj = module.path.rsplit(".", 1)[-1]
    rank = _CANONICAL.index(proj) if proj in _CANONICAL else len(_CANONICAL)
    return module.layer, rank, module.path


def suggest_base(
    modules: dict[tuple[str, int, str], _Module], catalog: Catalog, exclude: str
) -> str | None:
    """The catalog model every tensor shape fits, if exactly one does."""
    fits = []
    for spec in catalog.models:
        if spec.id == exclude:
            continue
        ok = bool(modules)
        for module in modules.values():
            dims = spec.module_dims(module.path, module.layer)
            if (
                dims is None
                or module.a is None
                or module.b is None
                or module.layer >= spec.num_layers
                or len(module.a) != 2
                or len(module.b) != 2
                or module.a[1] != dims[0]
                or module.b[0] != dims[1]
            ):
                ok = False
                break
        if ok:
            fits.append(spec.display_name)
    return fits[0] if len(fits) == 1 else None


def summarize(
    config: dict[str, Any] | None, facts: dict[str, Any], size: int | None
) -> AdapterSummary:
    config = config or {}
    targets = config.get("target_modules")
    alpha = config.get("lora_alpha")
    rank = config.get("r")
    return AdapterSummary(
        rank=rank if isinstance(rank, int) and not isinstance(rank, bool) else None,
        # only a finite alpha: a NaN would print as a bare NaN in --json output
        alpha=float(alpha) if alpha is not None and _positive_number(alpha) else None,
        target_modules=sorted(targets)
        if isinstance(targets, list) and all(isinstance(t, str) for t in targets)
        else ([targets] if isinstance(targets, str) else []),
        layers=facts.get("layers"),
        dtype=facts.get("dtype"),
        parameters=facts.get("parameters"),
        size_bytes=size,
        base_model_name_or_path=config.get("base_model_name_or_path")
        if isinstance(config.get("base_model_name_or_path"), str)
        else None,
    )
