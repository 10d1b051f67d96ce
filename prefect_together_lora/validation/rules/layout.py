"""Tier 0, layout: the archive or repo and the files in it (S5, S6, F1, F2, H3)."""

from __future__ import annotations

import re

from prefect_together_lora.sources.archive import (
    CONFIG,
    WEIGHTS,
    AdapterFiles,
    is_junk,
    normalize_member,
)
from prefect_together_lora.validation.rules.common import (
    _MAX_LISTED,
    Findings,
)


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
