"""Tier 1, config: ``adapter_config.json`` (C1-C9)."""

from __future__ import annotations

import json
import math
from typing import Any

from prefect_together_lora.sources.archive import (
    AdapterFiles,
)
from prefect_together_lora.sources.safetensors import has_lone_surrogate
from prefect_together_lora.validation.catalog import BaseModelSpec, Catalog
from prefect_together_lora.validation.rules.common import (
    Findings,
    ValidationOptions,
    _names,
    safe_regex,
)

_VARIANT_FIELDS: dict[str, Any] = {
    "lora_bias": lambda v: v is True,
    "fan_in_fan_out": lambda v: v is True,
    "use_qalora": lambda v: v is True,
    "layer_replication": lambda v: bool(v),
    "target_parameters": lambda v: bool(v),
    "alora_invocation_tokens": lambda v: bool(v),
    "trainable_token_indices": lambda v: bool(v),
    "megatron_config": lambda v: bool(v),
    "loftq_config": lambda v: bool(v),
    "use_bdlora": lambda v: bool(v),
    "velora_config": lambda v: bool(v),
    "arrow_config": lambda v: bool(v),
}


def parse_config(files: AdapterFiles, out: Findings) -> dict[str, Any] | None:
    """C1: the config is valid UTF-8 JSON (an object) of reasonable size."""
    if files.config_error:
        out.error(
            "CONFIG_INVALID_JSON",
            f"adapter_config.json cannot be read: {files.config_error}.",
            "Re-save the adapter with save_pretrained().",
        )
        return None
    raw = files.config or b""
    if has_lone_surrogate(raw):
        out.error(
            "CONFIG_INVALID_JSON",
            "adapter_config.json escapes a lone UTF-16 surrogate (\\uD800-\\uDFFF), which is "
            "not text.",
            "Re-save the adapter with save_pretrained().",
        )
        return None
    try:
        config = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        out.error(
            "CONFIG_INVALID_JSON",
            "adapter_config.json is not valid UTF-8.",
            "Re-save the adapter with save_pretrained().",
        )
        return None
    except json.JSONDecodeError as exc:
        out.error(
            "CONFIG_INVALID_JSON",
            f"adapter_config.json is not valid JSON: {exc.msg} at "
            f"line {exc.lineno} col {exc.colno}.",
            "Re-save the adapter with save_pretrained() rather than editing the file by hand.",
        )
        return None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        out.error(
            "CONFIG_INVALID_JSON",
            f"adapter_config.json holds a value that cannot be read: {exc}.",
            "Re-save the adapter with save_pretrained() rather than editing the file by hand.",
        )
        return None
    except RecursionError:
        out.error("CONFIG_INVALID_JSON", "adapter_config.json is nested too deeply.")
        return None
    if not isinstance(config, dict):
        out.error("CONFIG_INVALID_JSON", "adapter_config.json is not a JSON object.")
        return None
    return config


def _positive_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _layer_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_config_values(config: dict[str, Any], out: Findings) -> None:
    """Values serving engines compute with: a NaN or "sixteen" alpha, no target module, or a
    string layer list would load (or crash) at serving time, never here."""
    alpha = config.get("lora_alpha")
    if alpha is not None and not _positive_number(alpha):
        out.error(
            "CONFIG_VALUE_INVALID",
            f"lora_alpha is {alpha!r}; it must be a finite positive number (the LoRA "
            "scaling is lora_alpha / r).",
            "Set lora_alpha (commonly 2 x r) as a number, or re-save with peft.",
        )
    modules = config.get("target_modules")
    if isinstance(modules, list) and not modules:
        out.error(
            "CONFIG_VALUE_INVALID",
            "target_modules is empty: the adapter adapts nothing.",
            "List the projections the adapter was trained on, e.g. q_proj, v_proj.",
        )
    elif modules is not None and not isinstance(modules, (str, list)):
        out.error(
            "CONFIG_VALUE_INVALID",
            f"target_modules is {modules!r}; it must be a list of module names or a string.",
        )
    layers = config.get("layers_to_transform")
    if layers is not None and not (
        _layer_index(layers) or (isinstance(layers, list) and all(map(_layer_index, layers)))
    ):
        out.error(
            "CONFIG_VALUE_INVALID",
            f"layers_to_transform is {layers!r}; it must be a layer index or a list of them.",
        )


def check_config(
    config: dict[str, Any],
    spec: BaseModelSpec,
    catalog: Catalog,
    options: ValidationOptions,
    out: Findings,
) -> None:
    """C2-C7, C9 (C8's name comparison waits for the shapes, see :func:`check_base_name`)."""
    peft_type = config.get("peft_type")
    if str(peft_type).upper() != "LORA":
        out.error(
            "UNSUPPORTED_PEFT_TYPE",
            f"peft_type is {peft_type!r}; only LORA adapters can be served.",
            "Train a LoRA adapter (peft LoraConfig).",
        )
    missing = [k for k in ("r", "lora_alpha", "target_modules") if config.get(k) is None]
    if missing:
        out.error(
            "CONFIG_MISSING_FIELD",
            f"adapter_config.json lacks {_names(missing)}.",
            "Re-save with a current peft; serving engines require r, lora_alpha and "
            "target_modules.",
        )
    check_config_values(config, out)
    max_rank = options.max_rank or catalog.max_rank(spec)
    rank = config.get("r")
    if rank is not None:
        if not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0:
            out.error("RANK_INVALID", f"r is {rank!r}; it must be a positive integer.")
        elif rank > max_rank:
            out.error(
                "RANK_TOO_HIGH",
                f"LoRA rank {rank} exceeds the supported maximum {max_rank}.",
                f"Retrain with r <= {max_rank}.",
            )
    pattern = config.get("rank_pattern") or {}
    if isinstance(pattern, dict):
        for key, value in pattern.items():
            if isinstance(value, int) and value > max_rank:
                out.error(
                    "RANK_TOO_HIGH",
                    f"rank_pattern gives '{key}' rank {value}, above the "
                    f"supported maximum {max_rank}.",
                    f"Retrain with ranks <= {max_rank}.",
                )
    task = config.get("task_type")
    if task is not None and str(task).upper() != "CAUSAL_LM":
        out.error(
            "UNSUPPORTED_TASK_TYPE",
            f"task_type '{task}' is not supported for "
            "chat/completions serving; expected CAUSAL_LM.",
        )
    if config.get("use_dora") is True:
        out.error(
            "DORA_UNSUPPORTED",
            "DoRA adapters (use_dora=true) are not supported.",
            "Retrain without DoRA or merge it into the base.",
        )
    modules_to_save = config.get("modules_to_save")
    if modules_to_save:
        out.error(
            "MODULES_TO_SAVE_UNSUPPORTED",
            f"modules_to_save={modules_to_save!r} stores "
            "full layer weights, which multi-LoRA serving cannot load.",
            "Retrain without modules_to_save.",
        )
    variants = []
    bias = config.get("bias", "none")
    if bias not in (None, "none"):
        variants.append(f"bias={bias!r}")
    init = config.get("init_lora_weights")
    if isinstance(init, str) and (init.startswith("pissa") or init in ("olora", "corda", "loftq")):
        variants.append(f"init_lora_weights={init!r}")
    for name, is_set in _VARIANT_FIELDS.items():
        if name in config and is_set(config[name]):
            variants.append(f"{name}={config[name]!r}"[:80])
    for variant in variants:
        out.error(
            "UNSUPPORTED_LORA_VARIANT",
            f"adapter uses {variant}, which requires custom "
            "kernels/base changes; not supported for upload.",
            "Retrain as a plain LoRA (default LoraConfig options).",
        )
    check_target_modules(config.get("target_modules"), spec, out)


def check_target_modules(targets: Any, spec: BaseModelSpec, out: Findings) -> None:
    """C9: every target resolves to a projection the base supports for LoRA."""
    allowed = set(spec.target_modules)
    if targets is None:
        return
    if isinstance(targets, str):
        if targets == "all-linear":
            return
        regex = safe_regex(targets)
        if regex is None:
            out.error(
                "TARGET_MODULE_UNSUPPORTED",
                f"target_modules regex {targets[:80]!r} is invalid or too complex to check.",
                "Use a list of module names such as ['q_proj', 'v_proj'].",
            )
            return
        samples = [
            f"model.layers.0.self_attn.{m}" for m in ("q_proj", "k_proj", "v_proj", "o_proj")
        ]
        samples += [f"model.layers.0.mlp.{m}" for m in ("gate_proj", "up_proj", "down_proj")]
        samples += ["lm_head", "model.embed_tokens"]
        hit = [s.rsplit(".", 1)[-1] for s in samples if regex.fullmatch(s)]
        bad = [h for h in hit if h not in allowed]
        if not hit or bad:
            out.error(
                "TARGET_MODULE_UNSUPPORTED",
                f"target_modules regex {targets!r} selects "
                f"{_names(bad) if bad else 'no supported projection'}; supported: "
                f"{','.join(spec.target_modules)}.",
            )
        return
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        out.error(
            "TARGET_MODULE_UNSUPPORTED",
            "target_modules must be a list of module names, a regex string or 'all-linear'.",
        )
        return
    bad = [t for t in targets if t.rsplit(".", 1)[-1] not in allowed]
    if bad:
        out.error(
            "TARGET_MODULE_UNSUPPORTED",
            f"target_modules contains {_names(bad)}; supported: {','.join(spec.target_modules)}.",
            "Retrain targeting only the attention and MLP projections.",
        )
