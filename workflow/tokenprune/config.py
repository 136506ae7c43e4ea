"""Load and validate config.yaml outside Snakemake, with the workflow's own schema."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from tokenprune.errors import TokenpruneError

__all__ = [
    "SCHEMA_PATH",
    "load_schema",
    "schema_defaults",
    "schema_default",
    "validate_config",
    "resolve_zero_shot",
    "describe_path",
    "check_references",
    "load_config",
]

#: Package data, so that a wheel install (not only ``pip install -e``) validates configs;
#: workflow/schemas/config.schema.yaml, where Snakemake workflows keep their schema, links here.
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"


@functools.cache
def load_schema() -> dict[str, Any]:
    """The workflow's config schema (package data, linked from workflow/schemas/), read once per process; do not modify it."""
    if not SCHEMA_PATH.is_file():
        raise TokenpruneError(f"config schema not found at {SCHEMA_PATH}; reinstall tokenprune (pip install .)")
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def schema_defaults(section: str) -> dict[str, Any]:
    """The schema's default of every key of one config section (dotted for nested ones: ``retrieval.ann``).

    The library's own defaults come from here, so the schema stays their one owner.
    """
    node = load_schema()
    for key in section.split("."):
        node = node["properties"][key]
    return {key: spec["default"] for key, spec in node["properties"].items() if "default" in spec}


def schema_default(section: str, key: str) -> Any:
    """The schema's default of ``section.key``: a settings class's field default, so the schema owns it.

    Raises
    ------
    KeyError
        When the schema gives ``key`` no default (a misspelt field).
    """
    return schema_defaults(section)[key]


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` against the schema, fill in defaults, and check cross-references.

    Raises
    ------
    TokenpruneError
        Naming the offending key and what is allowed.
    """
    import jsonschema
    from snakemake.utils import validate

    schema = load_schema()
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        raise TokenpruneError(f"config key {describe_path(error.absolute_path)}: {error.message}")
    # Snakemake's validator is the one the workflow uses; here it fills in the schema's defaults.
    validate(config, str(SCHEMA_PATH), set_default=True)
    check_references(config)
    resolve_zero_shot(config)
    return config


def resolve_zero_shot(config: dict[str, Any]) -> None:
    """Fill each evaluation set's ``zero_shot: null`` in place: zero-shot unless it is the training dataset."""
    for evaluation in config["evaluate"]:
        if evaluation.get("zero_shot") is None:
            evaluation["zero_shot"] = evaluation["dataset"] != config["train"]["dataset"]


def describe_path(path: Iterable[str | int]) -> str:
    """Render a JSON path such as ``['k', 0]`` as ``'k[0]'`` (``'<top level>'`` when empty)."""
    rendered = ""
    for part in path:
        rendered += f"[{part}]" if isinstance(part, int) else (f".{part}" if rendered else str(part))
    return repr(rendered) if rendered else "<top level>"


def check_references(config: dict[str, Any]) -> None:
    """Check what a JSON schema cannot: names that must refer to configured datasets, splits and measures."""
    import ir_measures

    datasets = config["datasets"]
    for role, entry in [("train", config["train"]), *(("evaluate", item) for item in config["evaluate"])]:
        if entry["dataset"] not in datasets:
            raise TokenpruneError(
                f"{role}.dataset {entry['dataset']!r} is not a configured dataset; choose from {sorted(datasets)}"
            )
        splits = datasets[entry["dataset"]]["splits"]
        if entry["split"] not in splits:
            raise TokenpruneError(
                f"{role}: dataset {entry['dataset']!r} has no split {entry['split']!r}; choose from {sorted(splits)}"
            )
    posthoc_idf = "idf" in config.get("controls", {}).get("posthoc_strategies", [])
    if config["train"].get("models_dir") and posthoc_idf and config.get("indexing", {}).get("idf_source") == "training":
        raise TokenpruneError(
            "indexing.idf_source 'training' needs the training collection's IDF table, which a study importing "
            "models (train.models_dir) does not compute: set indexing.idf_source: indexed, or drop idf from "
            "controls.posthoc_strategies"
        )
    measures = list(config.get("metrics", []))
    measures += [name for item in config["evaluate"] for name in item.get("metrics", [])]
    for name in measures:
        try:
            ir_measures.parse_measure(name)
        except (ValueError, NameError, SyntaxError, TypeError, AttributeError, KeyError):
            raise TokenpruneError(
                f"metrics: {name!r} is not an ir_measures measure (e.g. nDCG@10, RR@10, R@100)"
            ) from None


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it (see :func:`validate_config`)."""
    path = Path(path)
    if not path.is_file():
        raise TokenpruneError(f"config file {str(path)!r} does not exist")
    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle) or {}
    return validate_config(config)
