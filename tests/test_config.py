"""The config schema accepts the default and names the key and allowed values when rejecting."""

from __future__ import annotations

import copy

import pytest
import yaml

from tokenprune.config import load_config, validate_config
from tokenprune.errors import TokenpruneError

from conftest import REPO


@pytest.fixture()
def default_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_default_config_is_valid_and_gets_defaults(default_config: dict) -> None:
    config = validate_config(copy.deepcopy(default_config))
    assert config["strategies"] == ["none", "first", "idf", "unused", "attention"]
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
    assert config["model"]["normalize"] is False
    assert config["metrics"] == ["nDCG@10", "RR@10", "R@100", "R@1000"]
    assert config["retrieval"]["depth"] == 1000


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.update(strategies=["none", "frist"]), ["'strategies[1]'", "'frist'", "'attention'"]),
        (lambda c: c.update(trainig={"steps": 5}), ["'trainig' was unexpected"]),
        (lambda c: c.update(k=[0]), ["'k[0]'", "minimum of 1"]),
        (lambda c: c.update(k=[10.5]), ["'k[0]'", "not of type 'integer'"]),
        (lambda c: c["model"].update(dim=0), ["'model.dim'", "minimum of 1"]),
        (lambda c: c["model"].update(projection_init="xavier"), ["'model.projection_init'", "'pca'"]),
        (lambda c: c["training"].update(learning_rate=0), ["'training.learning_rate'"]),
        (lambda c: c.update(metrics=["nDCG@10", "nDGC@10"]), ["'nDGC@10'", "ir_measures"]),
        (lambda c: c["train"].update(dataset="msmarco"), ["'msmarco'", "['adi', 'cranfield', 'med', 'scifact', 'vaswani']"]),
        (lambda c: c["evaluate"].append({"dataset": "scifact", "split": "dev"}), ["'dev'", "'test', 'train'"]),
        (lambda c: c["datasets"]["scifact"].pop("irds_id"), ["'datasets.scifact'"]),
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
    with pytest.raises(TokenpruneError, match="set indexing.idf_source: indexed, or drop idf from controls.posthoc_strategies"):
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
