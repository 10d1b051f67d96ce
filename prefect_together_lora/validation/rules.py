"""Every validation rule, with stable codes, severities, messages and hints.

Three tiers: source and layout (S*, H*, F*) → ``adapter_config.json`` (C*) → tensors (T*),
stopping after the first tier with an error but reporting every problem within a tier at once.
Rules are pure: they look at an :class:`AdapterFiles` and the catalog, and do no I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prefect_together_lora.schemas import AdapterSummary, Finding, Severity
from prefect_together_lora.sources.archive import (
    CONFIG,
    WEIGHTS,
    AdapterFiles,
    is_junk,
    normalize_member,
)
from prefect_together_lora.sources.safetensors import SafetensorsHeader, has_lone_surrogate
from prefect_together_lora.validation.catalog import BaseModelSpec, Catalog

RULES_VERSION = "2026.11.2"
SUPPORTED_DTYPES = {"F16", "BF16", "F32"}
DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4}
UNREADABLE_CODES = {
    "S3_UNREACHABLE",
    "HF_REPO_INACCESSIBLE",
    "SOURCE_UNREADABLE",
    "SOURCE_URL_REFUSED",
}
# Every code a finding can carry (stable: flows and tests assert on them).
ALL_CODES = frozenset(
    {
        "S3_NOT_PRESIGNED",
        "S3_URL_EXPIRES_SOON",
        "S3_URL_SESSION_TOKEN",
        "S3_URL_NOT_PUBLIC",
        "S3_UNREACHABLE",
        "SOURCE_UNREADABLE",
        "SOURCE_URL_REFUSED",
        "ARCHIVE_FORMAT",
        "ARCHIVE_NESTED",
        "ARCHIVE_UNSAFE_ENTRY",
        "ARCHIVE_TRUNCATED",
        "ARCHIVE_CORRUPT",
        "ARCHIVE_UNCHECKABLE",
        "HF_REPO_INACCESSIBLE",
        "HF_REVISION_MOVED",
        "HF_ADAPTER_NOT_AT_ROOT",
        "MISSING_ADAPTER_CONFIG",
        "MISSING_SAFETENSORS",
        "NOT_AN_ADAPTER",
        "CONFIG_INVALID_JSON",
        "UNSUPPORTED_PEFT_TYPE",
        "CONFIG_MISSING_FIELD",
        "CONFIG_VALUE_INVALID",
        "RANK_INVALID",
        "RANK_TOO_HIGH",
        "UNSUPPORTED_TASK_TYPE",
        "DORA_UNSUPPORTED",
        "MODULES_TO_SAVE_UNSUPPORTED",
        "UNSUPPORTED_LORA_VARIANT",
        "BASE_MODEL_UNSUPPORTED",
        "BASE_MODEL_MISMATCH",
        "BASE_MODEL_ALIAS",
        "BASE_MODEL_QUANTIZED",
        "TARGET_MODULE_UNSUPPORTED",
        "SAFETENSORS_CORRUPT",
        "ADAPTER_EMPTY",
        "TENSOR_NAME_UNEXPECTED",
        "TENSOR_PREFIX_MISMATCH",
        "LAYER_INDEX_OUT_OF_RANGE",
        "SHAPE_MISMATCH",
        "TENSOR_DTYPE_UNSUPPORTED",
        "TENSOR_DTYPE_F32",
        "RANK_INCONSISTENT",
        "ADAPTER_NOOP",
        "ADAPTER_NOT_SAMPLED",
        "TENSOR_NOT_FINITE",
        "ADAPTER_SIZE_UNEXPECTED",
    }
)
_MAX_LISTED = 5
_TENSOR_KEY = re.compile(
    r"^base_model\.model\.(?P<prefix>(?:[\w]+\.)*?)layers\.(?P<layer>\d+)\."
    r"(?P<module>[\w.]+?)\.(?P<kind>lora_A|lora_B)(?P<adapter>\.[\w-]+)?\.weight$"
)


@dataclass
class ValidationOptions:
    max_rank: int | None = None
    size_tolerance: float = 1.5
    min_url_lifetime_s: int = 100 * 60 + 10 * 60  # Together's 100 min, plus a margin
    check_data: bool = False  # T9: sample lora_B values (reads sample_bytes of weights)
    sample_bytes: int = 1 << 20
    read_deadline_s: float = 15.0  # reading an archive's metadata gives up after this


_NESTED_QUANTIFIER = re.compile(r"\([^()]*[*+][^()]*\)\s*[*+{]")


def safe_regex(pattern: str) -> re.Pattern[str] | None:
    """Compile a user-supplied pattern unless it could backtrack catastrophically."""
    if len(pattern) > 300 or _NESTED_QUANTIFIER.search(pattern):
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None


@dataclass
class Findings:
    items: list[Finding] = field(default_factory=list)

    def add(
        self,
        code: str,
        severity: Severity,
        message: str,
        hint: str | None = None,
        path: str | None = None,
    ) -> None:
        self.items.append(
            Finding(code=code, severity=severity, message=message, hint=hint, path=path)
        )

    def error(
        self, code: str, message: str, hint: str | None = None, path: str | None = None
    ) -> None:
        self.add(code, "error", message, hint, path)

    def warning(self, code: str, message: str, hint: str | None = None) -> None:
        self.add(code, "warning", message, hint)

    def info(self, code: str, message: str, hint: str | None = None) -> None:
        self.add(code, "info", message, hint)

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.items)


def _names(items: Iterable[str], limit: int = _MAX_LISTED) -> str:
    items = list(items)
    shown = ", ".join(f"'{i}'" for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# --- tier 0: layout ------------------------------------------------------------------------------


def check_layout(files: AdapterFiles, out: Findings, *, hub: bool = False) -> None:
    """S5 nested folder, S6 unsafe entries, F1 required files, F2 full model, H3 Hub subfolder."""
    seen: set[str] = set()
    unsafe: list[str] = []
    for member in files.members:
        name = member.name
        if (
            name.startswith("/")
            or re.match(r"^[A-Za-z]:[\\/]", name)
            or ".." in re.split(r"[\\/]", name)
        ):
            unsafe.append(f"{name} (absolute path or '..')")
        elif member.kind not in ("file", "dir"):
            unsafe.append(f"{name} ({member.kind}: links and special files are never extracted)")
        elif member.encrypted:
            unsafe.append(f"{name} (encrypted)")
        elif member.method is not None and member.method not in (0, 8):
            unsafe.append(f"{name} (compression method {member.method})")
        elif not member.is_dir and normalize_member(name) in seen:
            unsafe.append(f"{name} (duplicate)")
        seen.add(normalize_member(name))
    for entry in unsafe[:_MAX_LISTED]:
        out.error(
            "ARCHIVE_UNSAFE_ENTRY",
            f"Archive entry '{entry.rsplit(' (', 1)[0]}' is not allowed "
            f"({entry.rsplit(' (', 1)[1]}",
            "Re-create the archive with relative paths, no encryption, stored or deflated "
            "entries and no duplicates.",
        )
    if len(unsafe) > _MAX_LISTED:
        out.error("ARCHIVE_UNSAFE_ENTRY", f"{len(unsafe) - _MAX_LISTED} more unsafe entries.")

    if unsafe and any(
        m.kind not in ("file", "dir") and normalize_member(m.name) in (CONFIG, WEIGHTS)
        for m in files.members
    ):
        return  # an adapter file that is a link: that is the finding, not "missing"
    names = [
        normalize_member(m.name)
        for m in files.members
        if not m.is_dir and not is_junk(normalize_member(m.name))
    ]
    root = {n for n in names if "/" not in n}
    if CONFIG in root and WEIGHTS in root:
        if "config.json" in root or any(
            re.fullmatch(r"model(-\d+-of-\d+)?\.safetensors", n) for n in root
        ):
            out.warning(
                "NOT_AN_ADAPTER",
                "Full-model files (config.json / model*.safetensors) sit next to the "
                "adapter; only the adapter files are used.",
                "Upload only adapter_config.json and adapter_model.safetensors.",
            )
        return
    nested = sorted(
        {
            n.rsplit("/", 1)[0]
            for n in names
            if "/" in n and n.rsplit("/", 1)[1] in (CONFIG, WEIGHTS)
        }
    )
    if nested:
        folder = nested[0]
        if hub:
            out.error(
                "HF_ADAPTER_NOT_AT_ROOT",
                f"adapter_config.json not at repo root; found in '{folder}/'.",
                "Move the files to the root or upload that folder as its own repo.",
            )
        else:
            out.error(
                "ARCHIVE_NESTED",
                f"Files are inside '{folder}/'.",
                f"Re-create the archive from inside the folder: `cd {folder} && zip -r "
                f"../adapter.zip .` (or `tar czf ../adapter.tar.gz -C {folder} .`).",
            )
        return
    if (
        CONFIG not in root
        and "config.json" in root
        and any(re.fullmatch(r"model(-\d+-of-\d+)?\.safetensors(\.index\.json)?", n) for n in root)
    ):
        out.error(
            "NOT_AN_ADAPTER",
            "This looks like a full model (config.json + model.safetensors, no "
            "adapter_config.json).",
            "Upload it with --model-type model or provide the LoRA adapter.",
        )
        return
    if CONFIG not in root:
        out.error(
            "MISSING_ADAPTER_CONFIG",
            "adapter_config.json not found at the root.",
            "Save the adapter with peft's model.save_pretrained(), which writes it.",
        )
    if WEIGHTS not in root:
        if "adapter_model.bin" in root:
            out.error(
                "MISSING_SAFETENSORS",
                "adapter_model.safetensors not found (found adapter_model.bin).",
                "Convert: load with torch.load(..., weights_only=True) and save with "
                "safetensors.torch.save_file.",
            )
        else:
            out.error(
                "MISSING_SAFETENSORS",
                "adapter_model.safetensors not found at the root.",
                "Save with model.save_pretrained(dir, safe_serialization=True).",
            )


# --- tier 1: config ------------------------------------------------------------------------------

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


# --- tier 2: tensors -----------------------------------------------------------------------------


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


def check_base_name(
    config: dict[str, Any], spec: BaseModelSpec, catalog: Catalog, shapes_fit: bool, out: Findings
) -> None:
    """C8: the adapter's recorded base against the chosen one. The shapes decide: when every
    tensor fits the chosen base, a differing name is only a warning."""
    name = config.get("base_model_name_or_path")
    if not name or not isinstance(name, str):
        out.warning(
            "BASE_MODEL_ALIAS",
            "base_model_name_or_path is not set; base model taken "
            f"as {spec.id}" + ("; shapes verified." if shapes_fit else "."),
        )
        return
    recorded = catalog.find(name)
    if recorded is not None and recorded.id == spec.id:
        if name != spec.id and name not in spec.aliases[:3]:
            out.info(
                "BASE_MODEL_ALIAS",
                f"base_model_name_or_path '{name}' treated as {spec.display_name}.",
            )
        return
    if recorded is None:
        out.warning(
            "BASE_MODEL_ALIAS",
            f"base_model_name_or_path '{name}' treated as "
            f"{spec.display_name}"
            + ("; shapes verified." if shapes_fit else "; shapes do NOT fit."),
        )
        return
    message = f"Adapter was trained on '{name}' but base_model is '{spec.id}'."
    if shapes_fit:
        out.warning("BASE_MODEL_MISMATCH", message + " Every tensor shape fits the chosen base.")
    else:
        out.error("BASE_MODEL_MISMATCH", message, f"Use base_model='{recorded.id}'.")


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


_NONFINITE_MASKS = {"F16": (2, 0x7C00), "BF16": (2, 0x7F80), "F32": (4, 0x7F800000)}


def _nonfinite(data: bytes, dtype: str) -> bool:
    width, mask = _NONFINITE_MASKS.get(dtype, (0, 0))
    if not width or len(data) % width:
        return False
    words = memoryview(data).cast("H" if width == 2 else "I")
    return any(w & mask == mask for w in words)


def check_data(header: SafetensorsHeader, sample: bytes, out: Findings) -> None:
    """T9 (optional): in the sampled start of the data, all-zero lora_B means the adapter does
    nothing (untrained); NaN or Inf anywhere means it is broken."""
    inside = [(n, t) for n, t in header.tensors.items() if t.end <= len(sample)]
    lora_b = [(n, t) for n, t in inside if n.endswith("lora_B.weight")]
    if not lora_b:
        out.info(
            "ADAPTER_NOT_SAMPLED",
            f"No lora_B tensor lies within the {len(sample):,} bytes sampled; data check skipped.",
        )
    elif all(not any(sample[t.begin : t.end]) for _, t in lora_b):
        out.warning(
            "ADAPTER_NOOP",
            f"All {len(lora_b)} sampled lora_B tensors are zero; this adapter has no effect "
            "(was training run?).",
            "Check the training run actually updated the adapter before saving.",
        )
    broken = [n for n, t in inside if _nonfinite(sample[t.begin : t.end], t.dtype)]
    if broken:
        out.error(
            "TENSOR_NOT_FINITE",
            f"NaN or Inf values in {_names(broken)}.",
            "Training diverged or the file is corrupt; retrain or re-save.",
        )
