"""PyLate ColBERT folders: read as a backbone (with their projection), written by export-pylate, and a tiny study on one."""

from __future__ import annotations

import json
import shutil
import string
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import save_file

from conftest import workflow_command, write_topics_collection
from tokenprune.backbone import EMBEDDED_BACKBONE, resolve_backbone
from tokenprune.errors import TokenpruneError
from tokenprune.model import ColBERT, ColBERTConfig
from tokenprune.pylate_format import is_pylate_folder, read_pylate_folder, write_pylate_folder
from tokenprune.training import initialise_model

TEXTS = ["Aspirin reduces the risk of heart attacks.", "Vitamin C does not cure the common cold, say trials."]


def pylate_folder_by_hand(
    folder: Path, dim: int, *, prefixes: tuple[str, str] = ("[unused0]", "[unused1]"), bias: bool = False
) -> torch.Tensor:
    """The embedded backbone with a Dense projection, laid out file by file as PyLate 1.2 saves a ColBERT model."""
    embedded = Path(resolve_backbone(EMBEDDED_BACKBONE))
    folder.mkdir(parents=True)
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ):
        shutil.copy(embedded / name, folder / name)
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
            ]
        )
    )
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256, "do_lower_case": False}))
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "similarity_fn_name": "MaxSim",
                "query_prefix": prefixes[0],
                "document_prefix": prefixes[1],
                "query_length": 32,
                "document_length": 180,
                "attend_to_expansion_tokens": False,
                "skiplist_words": list(string.punctuation),
            }
        )
    )
    (folder / "1_Dense").mkdir()
    (folder / "1_Dense" / "config.json").write_text(
        json.dumps(
            {
                "in_features": 384,
                "out_features": dim,
                "bias": bias,
                "activation_function": "torch.nn.modules.linear.Identity",
            }
        )
    )
    weight = torch.randn(dim, 384, generator=torch.Generator().manual_seed(3)) / 384**0.5
    weights = {"linear.weight": weight} | ({"linear.bias": torch.zeros(dim)} if bias else {})
    save_file(weights, str(folder / "1_Dense" / "model.safetensors"))
    return weight


def test_a_pylate_folder_is_a_backbone_with_its_projection(tmp_path: Path) -> None:
    weight = pylate_folder_by_hand(tmp_path / "pylate", dim=16)
    assert is_pylate_folder(tmp_path / "pylate") and not is_pylate_folder(resolve_backbone(EMBEDDED_BACKBONE))
    model = ColBERT.from_backbone(ColBERTConfig(backbone=str(tmp_path / "pylate"), dim=16, normalize=True)).eval()
    assert torch.equal(model.projection.weight, weight) and model.projection_from_backbone
    # Training starts from that projection: no PCA replaces it at step 0.
    assert initialise_model(model, sampler=None) == {}  # type: ignore[arg-type]
    assert torch.equal(model.projection.weight, weight)
    # The vectors are the backbone's token outputs through that projection, normalised.
    ids, mask = model.tokenize_passages(TEXTS[:1])
    with torch.no_grad():
        hidden = model.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        vectors, _ = model.encode_passage_tokens(ids, mask, with_attention=False)
    assert torch.allclose(vectors, torch.nn.functional.normalize(hidden @ weight.T, dim=-1), atol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"prefixes": ("[Q] ", "[D] ")},
            r"marks queries and documents with '\[Q\] ' and '\[D\] '; tokenprune reads models that use '\[unused0\]'",
        ),
        ({"bias": True}, "has a bias; tokenprune's projection has none"),
        ({"dim": 24}, r"projects 384 to 24 dimensions; set model.dim to 24 \(it is 16\)"),
    ],
    ids=["other-markers", "bias", "dim"],
)
def test_pylate_folders_tokenprune_cannot_read_are_refused_by_name(tmp_path: Path, change: dict, message: str) -> None:
    pylate_folder_by_hand(tmp_path / "pylate", dim=change.pop("dim", 16), **change)
    with pytest.raises(TokenpruneError, match=message):
        ColBERT.from_backbone(ColBERTConfig(backbone=str(tmp_path / "pylate"), dim=16))


def test_export_round_trip_gives_the_same_vectors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ColBERTConfig(strategy="first", k=8, dim=16, normalize=True, query_expansion=True, passage_max_length=48)
    original = ColBERT.from_backbone(config).eval()
    settings = write_pylate_folder(original, tmp_path / "exported")
    assert settings["query_prefix"] == "[unused0]" and settings["document_prefix"] == "[unused1]"
    assert (settings["query_length"], settings["document_length"], settings["attend_to_expansion_tokens"]) == (
        32,
        48,
        True,
    )
    pylate = read_pylate_folder(tmp_path / "exported")
    assert torch.equal(pylate.projection, original.projection.weight)
    assert "attn_implementation" not in json.loads((tmp_path / "exported" / "config.json").read_text())
    reloaded = ColBERT.from_backbone(
        ColBERTConfig(**{**config.__dict__, "backbone": str(tmp_path / "exported")})
    ).eval()
    with torch.no_grad():
        for encode in (
            lambda model: model.encode_queries(TEXTS)[0],
            lambda model: model.encode_passages(TEXTS).vectors,
        ):
            assert torch.equal(encode(reloaded), encode(original))


def test_export_pylate_command_writes_the_folder_of_a_saved_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ColBERT.from_backbone(ColBERTConfig(dim=16)).save(tmp_path / "model")
    done = subprocess.run(
        ["tokenprune", "export-pylate", "--model", str(tmp_path / "model"), "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert {
        "modules.json",
        "config_sentence_transformers.json",
        "sentence_bert_config.json",
        "model.safetensors",
        "tokenizer.json",
        "1_Dense",
    } <= {path.name for path in (tmp_path / "out").iterdir()}


@pytest.mark.slow
def test_tiny_study_on_a_pylate_model(tmp_path: Path) -> None:
    """Every strategy fine-tunes, and post hoc prunes, a PyLate ColBERT model named as the backbone."""
    pylate_folder_by_hand(tmp_path / "pylate", dim=16)
    config = {
        "datasets": {
            "tiny": {"beir_folder": str(write_topics_collection(tmp_path / "collection")), "splits": ["train", "test"]}
        },
        "train": {"dataset": "tiny", "split": "train"},
        "evaluate": [{"dataset": "tiny", "split": "test"}],
        "model": {"backbone": str(tmp_path / "pylate"), "dim": 16, "passage_max_length": 32, "query_max_length": 16},
        "strategies": ["none", "first"],
        "k": [4],
        "controls": {"posthoc_strategies": ["first"], "step0": True},
        "training": {"steps": 2, "batch_size": 2, "warmup_steps": 1, "negatives_per_query": 2, "checkpoint_every": 2},
        "metrics": ["nDCG@10"],
        "seeds": [1],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [*workflow_command(tmp_path, tmp_path / "config.yaml"), "--cores", "2", "--quiet", "all"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(tmp_path / "results" / "summary" / "tiny" / "test.exact" / "comparison.csv")
    assert {"ColBERT, step 0", "ColBERT (no pruning)", "first", "first (post-hoc)", "untrained backbone"} <= set(
        table["method"]
    )
    assert "the PyLate model's own" in (tmp_path / "logs" / "train" / "tiny" / "first" / "k4" / "seed1.log").read_text()
    # The step-0 model is the PyLate model itself: its projection, not a PCA one.
    step0 = ColBERT.load(tmp_path / "results" / "models" / "tiny" / "step0" / "kall" / "seed1")
    assert torch.equal(step0.projection.weight, read_pylate_folder(tmp_path / "pylate").projection)
