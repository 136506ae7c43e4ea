"""The config schema accepts the default and names the key and allowed values when rejecting."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO
from tokenprune.config import load_config, load_schema, validate_config
from tokenprune.errors import TokenpruneError


@pytest.fixture()
def default_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_default_config_is_valid_and_gets_defaults(default_config: dict) -> None:
    config = validate_config(copy.deepcopy(default_config))
    assert config["strategies"] == ["none", "first", "idf", "unused", "attention", "pool"]
    assert config["k"] == [10, 50]
    assert config["model"]["dim"] == 128
    # Filled from the schema, not written in config.yaml.
    assert config["indexing"]["batch_size"] == 64
    assert config["training"]["max_grad_norm"] == 1.0


def test_minimal_config_gets_every_default() -> None:
    config = validate_config(
        {
            "datasets": {"tiny": {"beir_folder": "/data/tiny", "splits": ["train", "test"]}},
            "train": {"dataset": "tiny", "split": "train"},
            "evaluate": [{"dataset": "tiny", "split": "test"}],
        }
    )
    assert config["model"]["backbone"] == "embedded"
    assert config["model"]["normalize"] is True
    assert config["training"]["learning_rate"] == 1.0e-4
    assert config["metrics"] == ["nDCG@10", "RR@10", "R@100", "R@1000"]
    assert config["retrieval"]["depth"] == 1000


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.update(strategies=["none", "frist"]), ["'strategies[1]'", "'frist'", "'attention'"]),
        (lambda c: c.update(trainig={"steps": 5}), ["'trainig' was unexpected"]),
        (lambda c: c.update(k=[0]), ["'k[0]'", "minimum of 1"]),
        (lambda c: c.update(k=[10.5]), ["'k[0]'", "not of type 'integer'"]),
        (lambda c: c.update(model={"dim": 0}), ["'model.dim'", "minimum of 1"]),
        (lambda c: c.update(model={"projection_init": "xavier"}), ["'model.projection_init'", "'pca'"]),
        (lambda c: c.update(training={"learning_rate": 0}), ["'training.learning_rate'"]),
        (lambda c: c.update(metrics=["nDCG@10", "nDGC@10"]), ["'nDGC@10'", "ir_measures"]),
        (
            lambda c: c["train"].update(dataset="msmarco"),
            ["'msmarco'", "['adi', 'cranfield', 'med', 'scifact', 'vaswani']"],
        ),
        (lambda c: c["evaluate"].append({"dataset": "scifact", "split": "dev"}), ["'dev'", "'test', 'train'"]),
        # Neither a download id nor a folder to read: nothing to open.
        (
            lambda c: [c["datasets"]["scifact"].pop(key) for key in ("irds_id", "offline_folder")],
            ["'datasets.scifact'"],
        ),
    ],
)
def test_bad_values_are_rejected_with_key_and_allowed_values(default_config: dict, mutate, expected: list[str]) -> None:
    mutate(default_config)
    with pytest.raises(TokenpruneError) as error:
        validate_config(default_config)
    for fragment in expected:
        assert fragment in str(error.value)


def test_missing_config_file_is_named(tmp_path) -> None:
    with pytest.raises(TokenpruneError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_an_imported_study_cannot_rank_post_hoc_idf_with_the_training_table(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["train"]["models_dir"] = "/elsewhere/results/models"
    with pytest.raises(
        TokenpruneError, match="set indexing.idf_source: indexed, or drop idf from controls.posthoc_strategies"
    ):
        validate_config(copy.deepcopy(config))
    config["indexing"] = {"idf_source": "indexed"}
    assert validate_config(config)["indexing"]["idf_source"] == "indexed"


def test_an_evaluation_set_may_name_its_own_measures(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["evaluate"][1]["metrics"] = ["RR(rel=2)@10", "nDCG@10"]
    assert validate_config(copy.deepcopy(config))["evaluate"][1]["metrics"] == ["RR(rel=2)@10", "nDCG@10"]
    config["evaluate"][1]["metrics"] = ["nDCG@ten"]
    with pytest.raises(TokenpruneError, match="nDCG@ten"):
        validate_config(config)


def test_strategy_names_agree_with_the_registry_and_the_schema() -> None:
    import torch

    from tokenprune.config import load_schema
    from tokenprune.selection import SELECTORS, make_selector
    from tokenprune.strategies import (
        CORPUS_FITTED_STRATEGIES,
        IN_LOOP_ONLY_STRATEGIES,
        INSERTING_STRATEGIES,
        POSTHOC_STRATEGIES,
        STRATEGIES,
        TRAINED_STRATEGIES,
    )

    assert list(SELECTORS) == list(STRATEGIES)
    properties = load_schema()["properties"]
    assert properties["strategies"]["items"]["enum"] == list(TRAINED_STRATEGIES)
    assert properties["controls"]["properties"]["posthoc_strategies"]["items"]["enum"] == list(POSTHOC_STRATEGIES)
    resources = {"idf": torch.ones(8), "unused_ids": [5, 6, 7], "passage_length": 16, "normalize": True}
    selectors = {name: make_selector(name, None if name == "none" else 3, **resources) for name in STRATEGIES}
    assert {name for name, selector in selectors.items() if selector.prefix_ids()} == INSERTING_STRATEGIES == {"unused"}
    trainable = {name for name, selector in selectors.items() if selector.trainable_module() is not None}
    assert trainable == IN_LOOP_ONLY_STRATEGIES - INSERTING_STRATEGIES == {"const"}
    fitted = {name for name, selector in selectors.items() if selector.needs_corpus_counts}
    assert fitted == CORPUS_FITTED_STRATEGIES == {"attention_var", "pool_var", "static"}
    assert "static" not in TRAINED_STRATEGIES and "const" not in POSTHOC_STRATEGIES


def test_library_defaults_are_the_schema_defaults() -> None:
    from dataclasses import fields

    from tokenprune.config import schema_defaults
    from tokenprune.model import ColBERTConfig
    from tokenprune.training import TrainingSettings

    for cls, section in ((ColBERTConfig, "model"), (TrainingSettings, "training")):
        defaults = schema_defaults(section)
        for field in fields(cls):
            if field.name in defaults:
                assert field.default == defaults[field.name], (section, field.name)


def test_unknown_training_settings_are_refused_by_name() -> None:
    from tokenprune.training import TrainingSettings

    assert TrainingSettings.from_config({"steps": 3, "negatives_skip": 5}, seed=1).steps == 3
    with pytest.raises(TokenpruneError, match=r"unknown training setting\(s\) \['learning_rte'\]"):
        TrainingSettings.from_config({"learning_rte": 1e-4}, seed=1)


def test_zero_shot_resolves_from_the_training_dataset_unless_set(default_config: dict) -> None:
    """An evaluation set is zero-shot unless it is the training dataset; TREC DL next to MS MARCO training says so itself."""
    default_config["evaluate"].append({"dataset": "med", "split": "all", "zero_shot": False})
    config = validate_config(copy.deepcopy(default_config))
    assert [(e["dataset"], e["zero_shot"]) for e in config["evaluate"]] == [
        ("scifact", False),
        ("cranfield", True),
        ("med", False),
    ]


def test_msmarco_mini_preset_is_in_domain_on_trec_dl_and_zero_shot_elsewhere(default_config: dict) -> None:
    preset = yaml.safe_load((REPO / "configs" / "msmarco-mini.yaml").read_text())
    merged = copy.deepcopy(default_config)
    for key, value in preset.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    config = validate_config(merged)
    domains = {e["dataset"]: e["zero_shot"] for e in config["evaluate"]}
    assert domains == {
        "trec-dl-2019": False,
        "trec-dl-2020": False,
        "scifact": True,
        "cranfield": True,
        "med": True,
        "adi": True,
        "vaswani": True,
    }
    assert config["train"] == {"dataset": "msmarco-dev600", "split": "train", "models_dir": None}
    assert config["report"]["study"] == "msmarco-mini"


def schema_defaults_met(schema: dict, config: dict, path: tuple[str, ...] = ()) -> list[str]:
    """Each key of ``config`` that the schema gives a default, with what it does to that default."""
    found = []
    for key, value in config.items():
        entry = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and "properties" in entry:
            found += schema_defaults_met(entry, value, (*path, key))
        elif "default" in entry:
            verb = "restates" if value == entry["default"] else "contradicts"
            found.append(f"{'.'.join((*path, key))}: {value!r} {verb} the schema's default {entry['default']!r}")
    return found


def test_config_yaml_sets_only_what_the_schema_leaves_open() -> None:
    """The schema owns every default: config.yaml neither restates one nor overrides one."""
    assert schema_defaults_met(load_schema(), yaml.safe_load((REPO / "config.yaml").read_text())) == []


def test_the_defaults_config_yaml_shows_in_comments_are_the_schemas() -> None:
    text = (REPO / "config.yaml").read_text()
    commented = text[text.index("# What studies change most") :].splitlines()[1:]
    shown = yaml.safe_load("\n".join(line.removeprefix("# ") for line in commented))
    assert set(shown) >= {"strategies", "k", "seeds", "model", "training"}
    config = validate_config(yaml.safe_load(text))
    for key, value in shown.items():
        if isinstance(value, dict):
            assert {name: config[key][name] for name in value} == value, key
        else:
            assert config[key] == value, key


def test_restated_and_contradicted_defaults_are_named() -> None:
    schema = load_schema()
    config = {"k": [10, 50], "training": {"learning_rate": 2e-5}, "datasets": {}}
    assert schema_defaults_met(schema, config) == [
        "k: [10, 50] restates the schema's default [10, 50]",
        "training.learning_rate: 2e-05 contradicts the schema's default 0.0001",
    ]


def schema_leaf_defaults() -> dict[str, list[str]]:
    """Every scalar or list default of the schema, by its key's last name."""
    leaves: dict[str, list[str]] = {}

    def walk(node: dict, path: tuple[str, ...]) -> None:
        for key, entry in node.get("properties", {}).items():
            walk(entry, (*path, key))
            if "default" in entry and not isinstance(entry["default"], dict):
                leaves.setdefault(key, []).append(".".join((*path, key)))
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], (*path, "*"))

    walk(load_schema(), ())
    return leaves


# Library parameters named like a schema key that are a different setting (an internal batch of
# a corpus pass, the audit's own depth), not the study's value under another owner.
NOT_THE_SCHEMAS = {"batch_size", ("audit_negatives", "depth")}


def test_no_library_keyword_default_restates_or_contradicts_the_schema() -> None:
    """The schema owns the study's values: a library function takes them from its caller."""
    import ast

    leaves = {**schema_leaf_defaults(), "skip": ["training.negatives_skip"]}
    shadowed = []
    for path in sorted((REPO / "workflow" / "tokenprune").rglob("*.py")):
        for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            arguments = function.args
            positional = arguments.posonlyargs + arguments.args
            defaulted = list(
                zip(positional[len(positional) - len(arguments.defaults) :], arguments.defaults, strict=True)
            )
            defaulted += [
                (name, value) for name, value in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True) if value
            ]
            for argument, value in defaulted:
                name = argument.arg
                if name not in leaves or name in NOT_THE_SCHEMAS or (function.name, name) in NOT_THE_SCHEMAS:
                    continue
                if isinstance(value, ast.Constant) and value.value is None:
                    continue
                shadowed.append(
                    f"{path.relative_to(REPO)}:{function.lineno} {function.name}({name}=…) vs {leaves[name]}"
                )
    assert shadowed == []


def test_docs_configuration_md_is_the_schemas_page() -> None:
    """docs/configuration.md is generated ('tokenprune config-docs docs/configuration.md' renews it)."""
    from tokenprune.config_docs import write_configuration_docs

    assert write_configuration_docs(REPO / "docs" / "configuration.md", check=True)


def test_the_configuration_page_follows_the_schema(tmp_path) -> None:
    from tokenprune.config_docs import render_configuration_docs, write_configuration_docs

    schema = copy.deepcopy(load_schema())
    schema["properties"]["training"]["properties"]["steps"]["default"] = 7
    page = render_configuration_docs(schema)
    assert "| `training.steps` | integer ≥ 1 | `7` |" in page
    assert "| `datasets.*.offline_folder` | string |" in page and "| `evaluate[].split` | string |" in page
    stale = tmp_path / "configuration.md"
    stale.write_text(page)
    with pytest.raises(TokenpruneError, match="out of date with the config schema"):
        write_configuration_docs(stale, check=True)


def test_every_rule_takes_its_job_size_from_the_config() -> None:
    """No rule hard-codes mem_mb or runtime; each names a stage of the schema's `resources`, and a
    collection may size every stage (the per-dataset enum lists them all)."""
    import re

    schema = load_schema()
    stages = set(schema["properties"]["resources"]["properties"])
    per_dataset = schema["$defs"]["dataset"]["properties"]["resources"]["propertyNames"]["enum"]
    assert sorted(per_dataset) == sorted(stages)
    named = set()
    for rules in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = rules.read_text(encoding="utf-8")
        assert not re.findall(r"\b(?:mem_mb|runtime)=\d", text), rules.name
        named |= set(re.findall(r'job_resource\("(\w+)", "(?:mem_mb|runtime)"\)', text))
    assert named == stages
