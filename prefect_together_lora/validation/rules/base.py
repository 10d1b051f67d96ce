"""The recorded base model against the chosen one (C8): names, aliases and model families."""

from __future__ import annotations

import re
from typing import Any

from prefect_together_lora.validation.catalog import BaseModelSpec, Catalog
from prefect_together_lora.validation.rules.common import Findings

# Model families by the name of the model (the part after the org). Mistral 7B and Llama 3 8B
# have identical shapes, so only the name can tell an adapter trained on one from the other.
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("mistral", r"mistral|mixtral|ministral|codestral|mathstral|devstral|magistral"),
    ("gemma", r"gemma"),
    ("qwen", r"qwen|qwq"),
    ("llama", r"llama"),
    ("phi", r"\bphi-?\d"),
    ("falcon", r"falcon"),
    ("deepseek", r"deepseek"),
    ("gpt-oss", r"gpt-oss"),
    ("olmo", r"olmo"),
    ("granite", r"granite"),
    ("command-r", r"command-r|c4ai"),
    ("starcoder", r"starcoder"),
    ("internlm", r"internlm"),
    ("yi", r"^yi-"),
)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def model_family(name: str) -> str | None:
    """The family a Hub model id names (``mistralai/Mistral-7B-v0.1`` → mistral); None for
    anything that is not a Hub id (a local path, a URL) or names no family we know."""
    if not _HUB_ID.fullmatch(name.strip()):
        return None
    model = name.strip().split("/", 1)[1].lower()
    for family, pattern in _FAMILIES:
        if re.search(pattern, model):
            return family
    return None


def check_base_name(
    config: dict[str, Any], spec: BaseModelSpec, catalog: Catalog, shapes_fit: bool, out: Findings
) -> None:
    """C8: the adapter's recorded base against the chosen one. The shapes decide within a
    family (a differing name whose every tensor fits is a warning); a known model of another
    family is an error even when every shape fits, because the weights it was trained against
    are not these."""
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
    family, expected = model_family(name), model_family(spec.id)
    if family is not None and expected is not None and family != expected:
        out.error(
            "BASE_MODEL_MISMATCH",
            f"Adapter was trained on '{name}', a {family} model, but base_model '{spec.id}' is "
            f"a {expected} model"
            + (
                " (every tensor shape fits, but the weights are not the ones it learned on)."
                if shapes_fit
                else "."
            ),
            f"Use the base it was trained on: base_model='{recorded.id}'."
            if recorded is not None
            else "Serve it on the base it was trained on, or retrain on this one.",
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
