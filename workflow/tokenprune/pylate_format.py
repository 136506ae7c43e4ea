"""ColBERT models in PyLate's folder layout (lightonai/pylate, a sentence-transformers model): read and write.

A PyLate ColBERT folder holds the transformer at its root (``config.json``,
``model.safetensors``, the tokenizer, ``sentence_bert_config.json``), its
linear projection in a ``Dense`` module folder (``1_Dense/config.json`` and
``1_Dense/model.safetensors`` with ``linear.weight``), both listed in
``modules.json``, and its ColBERT settings in
``config_sentence_transformers.json``: the query and document prefixes
(the ``[Q]``/``[D]`` markers), ``query_length``, ``document_length``,
``attend_to_expansion_tokens`` and the ``skiplist_words`` it drops from
documents. This is the layout PyLate 1.2 saves (checked against a folder it
wrote, benchmarks/README.md).

Named as ``model.backbone``, such a folder gives the transformer and the
projection (:func:`read_pylate_folder`), so that any strategy prunes an
existing ColBERT model post hoc or fine-tunes it with the selection in the
loop. :func:`write_pylate_folder` exports a tokenprune model for PyLate.

Two differences in behaviour remain, and are stated rather than hidden:
PyLate always pads queries with ``[MASK]`` to ``query_length`` and scores
those vectors (tokenprune does so only with ``query_expansion``), and PyLate
keeps ``[CLS]``, ``[D]`` and ``[SEP]`` in documents, as tokenprune's
``candidate_tokens: no_punctuation`` does, not its default ``content``.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tokenprune.errors import TokenpruneError
from tokenprune.io import atomic_directory

if TYPE_CHECKING:
    from tokenprune.model import ColBERT

__all__ = [
    "MODULES_FILE",
    "SETTINGS_FILE",
    "TRANSFORMER_CONFIG_FILE",
    "DENSE_FOLDER",
    "DENSE_TYPES",
    "TRANSFORMER_TYPE",
    "IDENTITY",
    "PylateColBERT",
    "is_pylate_folder",
    "read_pylate_folder",
    "write_pylate_folder",
]

MODULES_FILE = "modules.json"
SETTINGS_FILE = "config_sentence_transformers.json"
TRANSFORMER_CONFIG_FILE = "sentence_bert_config.json"
DENSE_FOLDER = "1_Dense"
DENSE_TYPES = ("pylate.models.Dense.Dense", "sentence_transformers.models.Dense")
TRANSFORMER_TYPE = "sentence_transformers.models.Transformer"
IDENTITY = "torch.nn.modules.linear.Identity"


@dataclass(frozen=True)
class PylateColBERT:
    """What tokenprune takes from a PyLate folder besides the transformer at its root."""

    folder: Path
    projection: torch.Tensor  # [out_features, in_features], as nn.Linear stores it
    query_prefix: str
    document_prefix: str
    query_length: int | None
    document_length: int | None


def is_pylate_folder(location: str | Path) -> bool:
    """Whether ``location`` is a local folder in PyLate's layout (a ``modules.json`` listing a Dense module)."""
    modules = Path(location) / MODULES_FILE
    if not modules.is_file():
        return False
    try:
        return any(module.get("type") in DENSE_TYPES for module in json.loads(modules.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, AttributeError, TypeError):
        return False


def read_pylate_folder(location: str | Path) -> PylateColBERT:
    """The projection and ColBERT settings of a PyLate folder.

    Raises
    ------
    TokenpruneError
        If the folder's modules are not a transformer at the root followed by
        one Dense projection without bias or activation (what tokenprune's
        model is), or its files are unreadable.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(location)
    try:
        modules = json.loads((folder / MODULES_FILE).read_text(encoding="utf-8"))
        settings_path = folder / SETTINGS_FILE
        settings = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.is_file() else {}
    except (OSError, json.JSONDecodeError) as error:
        raise TokenpruneError(f"PyLate folder {str(folder)!r} is unreadable: {error}") from None
    kinds = [module.get("type") for module in modules]
    if (
        len(modules) != 2
        or kinds[0] != TRANSFORMER_TYPE
        or modules[0].get("path") not in ("", ".")
        or kinds[1] not in DENSE_TYPES
    ):
        raise TokenpruneError(
            f"PyLate folder {str(folder)!r} has modules {kinds}; tokenprune reads a transformer at the folder's root "
            "followed by one Dense projection"
        )
    dense = folder / modules[1]["path"]
    try:
        dense_config = json.loads((dense / "config.json").read_text(encoding="utf-8"))
        weights = load_file(str(dense / "model.safetensors"))
    except (OSError, json.JSONDecodeError, SafetensorError) as error:
        raise TokenpruneError(f"the Dense projection of PyLate folder {str(folder)!r} is unreadable: {error}") from None
    if dense_config.get("bias") or "linear.bias" in weights:
        raise TokenpruneError(f"the Dense projection of {str(folder)!r} has a bias; tokenprune's projection has none")
    if dense_config.get("activation_function", IDENTITY) != IDENTITY:
        raise TokenpruneError(
            f"the Dense projection of {str(folder)!r} applies {dense_config['activation_function']}; "
            "tokenprune's projection is linear"
        )
    if "linear.weight" not in weights:
        raise TokenpruneError(f"the Dense projection of {str(folder)!r} has no linear.weight")
    return PylateColBERT(
        folder=folder,
        projection=weights["linear.weight"],
        query_prefix=settings.get("query_prefix") or "[unused0]",
        document_prefix=settings.get("document_prefix") or "[unused1]",
        query_length=settings.get("query_length"),
        document_length=settings.get("document_length"),
    )


def write_pylate_folder(model: ColBERT, output: str | Path) -> dict[str, Any]:
    """Export ``model`` (a :class:`tokenprune.model.ColBERT`) as a PyLate ColBERT folder, atomically; return its settings.

    The transformer and tokenizer go to the root, the projection to
    ``1_Dense``, and the settings to ``config_sentence_transformers.json``:
    the ``[unused0]``/``[unused1]`` markers, the model's lengths, and
    ``attend_to_expansion_tokens`` as the model's ``query_expansion`` (which
    attends to its ``[MASK]`` tokens). The selection layer is not exported:
    PyLate keeps every vector.
    """
    from safetensors.torch import save_file

    config = model.config
    settings = {
        "similarity_fn_name": "MaxSim",
        "query_prefix": model.tokenizer.convert_ids_to_tokens(model.query_marker_id),
        "document_prefix": model.tokenizer.convert_ids_to_tokens(model.document_marker_id),
        "query_length": config.query_max_length,
        "document_length": config.passage_max_length,
        "attend_to_expansion_tokens": config.query_expansion,
        "skiplist_words": list(string.punctuation),
        "tokenprune": {"strategy": config.strategy, "k": config.k, "normalize": config.normalize},
    }
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": TRANSFORMER_TYPE},
        {"idx": 1, "name": "1", "path": DENSE_FOLDER, "type": DENSE_TYPES[0]},
    ]
    dense = {
        "in_features": model.projection.in_features,
        "out_features": model.projection.out_features,
        "bias": False,
        "activation_function": IDENTITY,
    }
    with atomic_directory(output) as staging:
        model.backbone.save_pretrained(staging)
        _drop_attention_implementation(staging / "config.json")
        model.tokenizer.save_pretrained(staging)
        (staging / TRANSFORMER_CONFIG_FILE).write_text(
            json.dumps({"max_seq_length": config.passage_max_length - 1, "do_lower_case": False}, indent=2) + "\n"
        )
        (staging / MODULES_FILE).write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")
        (staging / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        (staging / DENSE_FOLDER).mkdir()
        (staging / DENSE_FOLDER / "config.json").write_text(json.dumps(dense) + "\n", encoding="utf-8")
        weight = model.projection.weight.detach().contiguous().cpu().float()
        save_file(
            {"linear.weight": weight}, str(staging / DENSE_FOLDER / "model.safetensors"), metadata={"format": "pt"}
        )
    return settings


def _drop_attention_implementation(config_file: Path) -> None:
    """Leave the loader to choose its attention kernel: tokenprune's own is registered in this process only."""
    values = json.loads(config_file.read_text(encoding="utf-8"))
    for key in ("_attn_implementation", "attn_implementation", "_attn_implementation_autoset"):
        values.pop(key, None)
    config_file.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
