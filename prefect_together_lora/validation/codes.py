"""Every finding code, defined once: its tier, the severity it is reported at (at most), what it
checks, the usual fix and its anchor in ``docs/rules.md`` (generated from this table:
``python -m prefect_together_lora.validation.codes > docs/rules.md``).

A finding with a code that is not here cannot be made (:class:`Findings` refuses it), so the
table, the docs and the rules cannot drift apart.

To add a rule: one :class:`Rule` line here, the check in the tier's module under
``validation/rules/``, a case in ``tests/adapter_cases.py``, then regenerate ``docs/rules.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prefect_together_lora.schemas import Severity

Tier = Literal["source", "layout", "config", "tensors", "base", "data"]
TIERS: tuple[Tier, ...] = ("source", "layout", "config", "tensors", "base", "data")
_RANK = {"info": 0, "warning": 1, "error": 2}


@dataclass(frozen=True)
class Rule:
    code: str
    tier: Tier
    severity: Severity  # the most severe level the rule reports
    checks: str
    fix: str
    unreadable: bool = False  # the source itself could not be read (CLI exit code 2)

    @property
    def anchor(self) -> str:
        return f"docs/rules.md#{self.code.lower().replace('_', '-')}"

    def allows(self, severity: Severity) -> bool:
        return _RANK[severity] <= _RANK[self.severity]


RULES: dict[str, Rule] = {
    r.code: r
    for r in (
        # -- source: where the adapter is, and whether it can be read at all ----------------
        Rule(
            "S3_NOT_PRESIGNED",
            "source",
            "error",
            "a URL source is an https S3 presigned URL",
            "Pass s3://bucket/key (the plugin presigns it) or `aws s3 presign --expires-in 21600`.",
        ),
        Rule(
            "S3_URL_EXPIRES_SOON",
            "source",
            "error",
            "the presigned URL lives at least 100 minutes (plus a margin)",
            "Re-sign with a longer --expires-in.",
        ),
        Rule(
            "S3_URL_SESSION_TOKEN",
            "source",
            "warning",
            "the URL is not signed with temporary credentials that may die first",
            "Sign with credentials that outlive the upload.",
        ),
        Rule(
            "S3_URL_NOT_PUBLIC",
            "source",
            "warning",
            "the URL's host is one Together can reach",
            "Use a public S3 endpoint (a local one works only with the emulator).",
        ),
        Rule(
            "S3_UNREACHABLE",
            "source",
            "error",
            "the S3 object or URL answers",
            "Check the bucket, key, credentials and network; re-sign an expired URL.",
            unreadable=True,
        ),
        Rule(
            "SOURCE_UNREADABLE",
            "source",
            "error",
            "the source exists and can be read",
            "Check the path or source form (see `together-lora validate --help`).",
            unreadable=True,
        ),
        Rule(
            "SOURCE_URL_REFUSED",
            "source",
            "error",
            "a URL never points at link-local, metadata or reserved addresses",
            "Use s3://bucket/key or a presigned S3 URL.",
            unreadable=True,
        ),
        Rule(
            "HF_REPO_INACCESSIBLE",
            "source",
            "error",
            "the Hub repo and revision exist and the token may read them",
            "Check the repo id and revision; pass an HF token for private or gated repos.",
            unreadable=True,
        ),
        Rule(
            "HF_REVISION_MOVED",
            "source",
            "warning",
            "the Hub revision did not move while it was validated",
            "Pin a commit sha (`hf://org/repo@<commit>`) for reproducible uploads.",
        ),
        # -- layout: the archive or repo and the files in it --------------------------------
        Rule(
            "ARCHIVE_FORMAT",
            "layout",
            "error",
            "the archive is a .zip, .tar or .tar.gz whose bytes match its name",
            "Create it with `zip -r` or `tar czf` from inside the adapter folder.",
        ),
        Rule(
            "ARCHIVE_CORRUPT",
            "layout",
            "error",
            "the archive's structure is sound and within limits (entries, directory, headers)",
            "Re-create the archive with zip or tar from the adapter folder.",
        ),
        Rule(
            "ARCHIVE_TRUNCATED",
            "layout",
            "error",
            "the archive is whole (not cut short)",
            "Upload the archive again, whole.",
        ),
        Rule(
            "ARCHIVE_UNCHECKABLE",
            "layout",
            "error",
            "a .tar.gz reaches its adapter files within 256 MiB of other members",
            "Archive only the adapter files, or use a .zip (read by ranges).",
        ),
        Rule(
            "ARCHIVE_NESTED",
            "layout",
            "error",
            "the adapter files sit at the archive root, not in a folder",
            "`cd my-adapter && zip -r ../adapter.zip .`",
        ),
        Rule(
            "ARCHIVE_UNSAFE_ENTRY",
            "layout",
            "error",
            "no absolute or '..' paths, links, special files, encryption, odd compression or "
            "duplicates",
            "Re-create the archive with relative paths and regular files only.",
        ),
        Rule(
            "HF_ADAPTER_NOT_AT_ROOT",
            "layout",
            "error",
            "the Hub repo has the adapter files at its root",
            "Move the files to the root or upload that folder as its own repo.",
        ),
        Rule(
            "MISSING_ADAPTER_CONFIG",
            "layout",
            "error",
            "adapter_config.json is present",
            "Save the adapter with peft's model.save_pretrained().",
        ),
        Rule(
            "MISSING_SAFETENSORS",
            "layout",
            "error",
            "adapter_model.safetensors is present",
            "Save with model.save_pretrained(dir, safe_serialization=True).",
        ),
        Rule(
            "NOT_AN_ADAPTER",
            "layout",
            "error",
            "the files are a LoRA adapter, not a full model",
            "Upload only adapter_config.json and adapter_model.safetensors.",
        ),
        # -- config: adapter_config.json ----------------------------------------------------
        Rule(
            "CONFIG_INVALID_JSON",
            "config",
            "error",
            "adapter_config.json is a JSON object of text, at most 1 MB",
            "Re-save the adapter with save_pretrained().",
        ),
        Rule(
            "UNSUPPORTED_PEFT_TYPE",
            "config",
            "error",
            "peft_type is LORA",
            "Train a LoRA adapter (peft.LoraConfig).",
        ),
        Rule(
            "CONFIG_MISSING_FIELD",
            "config",
            "error",
            "r, lora_alpha and target_modules are set",
            "Re-save the adapter with save_pretrained().",
        ),
        Rule(
            "CONFIG_VALUE_INVALID",
            "config",
            "error",
            "lora_alpha is a finite positive number; target_modules and layers_to_transform "
            "are well-formed",
            "Fix the value in training and re-save the adapter.",
        ),
        Rule(
            "RANK_INVALID",
            "config",
            "error",
            "r (and rank_pattern values) are positive integers",
            "Set r to an integer such as 8, 16 or 32.",
        ),
        Rule(
            "RANK_TOO_HIGH",
            "config",
            "error",
            "the rank is within Together's maximum",
            "Retrain with a lower r.",
        ),
        Rule(
            "UNSUPPORTED_TASK_TYPE",
            "config",
            "error",
            "task_type is CAUSAL_LM",
            "Train with task_type='CAUSAL_LM'.",
        ),
        Rule(
            "DORA_UNSUPPORTED",
            "config",
            "error",
            "use_dora is not set",
            "Train a plain LoRA (use_dora=False).",
        ),
        Rule(
            "MODULES_TO_SAVE_UNSUPPORTED",
            "config",
            "error",
            "no modules_to_save (full copies of base layers)",
            "Train without modules_to_save.",
        ),
        Rule(
            "UNSUPPORTED_LORA_VARIANT",
            "config",
            "error",
            "no LoRA variant that needs custom kernels or changes the base",
            "Train a plain LoRA.",
        ),
        Rule(
            "TARGET_MODULE_UNSUPPORTED",
            "config",
            "error",
            "every target module is a projection Together serves LoRA on",
            "Target q/k/v/o_proj and gate/up/down_proj only.",
        ),
        # -- tensors: the safetensors header --------------------------------------------------
        Rule(
            "SAFETENSORS_CORRUPT",
            "tensors",
            "error",
            "the safetensors header is valid (length, JSON, dtypes, offsets, sizes)",
            "Re-upload the file; a truncated or corrupted upload is the usual cause.",
        ),
        Rule(
            "ADAPTER_EMPTY",
            "tensors",
            "error",
            "the file holds LoRA tensors",
            "Save the trained adapter, not an empty one.",
        ),
        Rule(
            "TENSOR_NAME_UNEXPECTED",
            "tensors",
            "error",
            "every tensor is a PEFT lora_A/lora_B weight of a known module",
            "Save with peft's save_pretrained(); do not rename tensors.",
        ),
        Rule(
            "TENSOR_PREFIX_MISMATCH",
            "tensors",
            "error",
            "tensor paths carry the prefix the served architecture expects",
            "Train on the exact base model Together serves.",
        ),
        Rule(
            "LAYER_INDEX_OUT_OF_RANGE",
            "tensors",
            "error",
            "every layer index exists in the base model",
            "Check the base model: the adapter was trained on a deeper one.",
        ),
        Rule(
            "SHAPE_MISMATCH",
            "tensors",
            "error",
            "every lora_A/lora_B shape fits the base model's dimensions",
            "Pass the base model the adapter was trained on.",
        ),
        Rule(
            "TENSOR_DTYPE_UNSUPPORTED",
            "tensors",
            "error",
            "tensors are F16, BF16 or F32",
            "Save the adapter in bfloat16 or float16.",
        ),
        Rule(
            "TENSOR_DTYPE_F32",
            "tensors",
            "warning",
            "tensors are half precision",
            "Save in bfloat16: half the size, same serving result.",
        ),
        Rule(
            "RANK_INCONSISTENT",
            "tensors",
            "error",
            "tensor ranks match the config's r and rank_pattern",
            "Re-save the adapter with save_pretrained().",
        ),
        Rule(
            "ADAPTER_SIZE_UNEXPECTED",
            "tensors",
            "warning",
            "the file size matches what the tensors need",
            "Re-save the adapter; extra data is ignored but suspicious.",
        ),
        # -- base: the base model -------------------------------------------------------------
        Rule(
            "BASE_MODEL_UNSUPPORTED",
            "base",
            "error",
            "the base model is one Together serves LoRA adapters on",
            "Pick a supported base, or extend the catalog if Together added one.",
        ),
        Rule(
            "BASE_MODEL_QUANTIZED",
            "base",
            "info",
            "the base is served in BF16/F16",
            "Nothing to do: adapters trained on BF16 weights still fit.",
        ),
        Rule(
            "BASE_MODEL_ALIAS",
            "base",
            "warning",
            "the adapter's recorded base names the chosen base",
            "Set base_model_name_or_path to the Together base id.",
        ),
        Rule(
            "BASE_MODEL_MISMATCH",
            "base",
            "error",
            "the adapter was trained on the chosen base (or at least its model family)",
            "Pass the base model the adapter was trained on.",
        ),
        # -- data: the optional sample of the weights -----------------------------------------
        Rule(
            "ADAPTER_NOT_SAMPLED",
            "data",
            "info",
            "a lora_B tensor lies in the sampled bytes",
            "Raise sample_bytes to check more of the data.",
        ),
        Rule(
            "ADAPTER_NOOP",
            "data",
            "warning",
            "the sampled lora_B tensors are not all zero",
            "Check the training run actually updated the adapter.",
        ),
        Rule(
            "TENSOR_NOT_FINITE",
            "data",
            "error",
            "no NaN or Inf in the sampled tensors",
            "Retrain: the weights diverged.",
        ),
    )
}
ALL_CODES = frozenset(RULES)
UNREADABLE_CODES = frozenset(code for code, rule in RULES.items() if rule.unreadable)


def rules_markdown() -> str:
    """The rules table of ``docs/rules.md``."""
    lines = [
        "# Validation rules",
        "",
        "Generated from `prefect_together_lora/validation/codes.py` "
        "(`python -m prefect_together_lora.validation.codes > docs/rules.md`); do not edit.",
        "Tiers run in order and validation stops after the first tier with an error.",
        "Together's own validation errors (v2 revisions) are reported as `TOGETHER_<RULE>`",
        "findings of the import step, with Together's message; they are not listed here.",
        "",
    ]
    for tier in TIERS:
        lines += [
            f"## {tier}",
            "",
            "| code | severity | checks that | usual fix |",
            "|---|---|---|---|",
        ]
        for rule in RULES.values():
            if rule.tier == tier:
                anchor = f'<a id="{rule.code.lower().replace("_", "-")}"></a>'
                fix = rule.fix.replace("|", "\\|")
                lines.append(f"| {anchor}`{rule.code}` | {rule.severity} | {rule.checks} | {fix} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(rules_markdown(), end="")
