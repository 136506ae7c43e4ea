"""Check that tokenprune and PyLate give the same vectors for the same ColBERT model, both ways.

PyLate 1.2 pins transformers <= 4.56.2 and tokenprune runs on 5.x, so the
check runs in two environments (set-up in benchmarks/README.md, "PyLate
round trip"), in two steps that share a work folder:

    python benchmarks/pylate_check.py tokenprune --work /tmp/pylate-check      # this project's environment
    .venv-pylate/bin/python benchmarks/pylate_check.py pylate --work /tmp/pylate-check

Step ``tokenprune`` builds a model on the embedded backbone (random 128-d
projection, normalised, ``[MASK]`` query expansion, ``candidate_tokens:
no_punctuation`` as PyLate keeps ``[CLS]``/``[D]``/``[SEP]`` and drops
punctuation), exports it with :func:`tokenprune.pylate_format.write_pylate_folder`,
and writes its query and document vectors. Step ``pylate`` loads that folder
in PyLate, encodes the same texts, saves a model of its own on the same
backbone (PyLate's layout, written by PyLate), and writes its vectors; then
step ``tokenprune --compare`` reads PyLate's folder as a tokenprune backbone
and compares every vector. The largest absolute difference is printed per
direction.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

TEXTS = [
    "Aspirin reduces the risk of heart attacks in adults with diabetes.",
    "Vitamin C does not cure the common cold, say trials (2019); zinc may shorten it.",
    "Adults need seven to nine hours of sleep: less raises blood pressure.",
]
QUERIES = ["does aspirin prevent heart attacks", "vitamin c and colds", "how much sleep do adults need"]
# PyLate's defaults, which its own folder below keeps; tokenprune's model uses the same.
QUERY_LENGTH, DOCUMENT_LENGTH = 32, 180


def tokenprune_step(work: Path, compare: bool) -> None:
    import torch

    from tokenprune.backbone import EMBEDDED_BACKBONE, resolve_backbone
    from tokenprune.model import ColBERT, ColBERTConfig
    from tokenprune.pylate_format import write_pylate_folder

    settings = {"dim": 128, "normalize": True, "query_expansion": True, "candidate_tokens": "no_punctuation",
                "query_max_length": QUERY_LENGTH, "passage_max_length": DOCUMENT_LENGTH}  # fmt: skip
    if compare:
        model = ColBERT.from_backbone(ColBERTConfig(backbone=str(work / "pylate_model"), **settings)).eval()
        report = compare_vectors(vectors_of(model), json.loads((work / "pylate_own.json").read_text()))
        print(json.dumps({"PyLate's folder read by tokenprune": report}))
        return
    torch.manual_seed(0)
    model = ColBERT.from_backbone(ColBERTConfig(**settings)).eval()
    write_pylate_folder(model, work / "tokenprune_export")
    (work / "tokenprune.json").write_text(json.dumps(vectors_of(model)))
    (work / "backbone.txt").write_text(resolve_backbone(EMBEDDED_BACKBONE))


def vectors_of(model) -> dict[str, list]:  # noqa: ANN001
    import torch

    with torch.no_grad():
        passages = model.encode_passages(TEXTS)
        queries, _ = model.encode_queries(QUERIES)
    documents = [passages.vectors[row][passages.mask[row]].numpy().tolist() for row in range(len(TEXTS))]
    return {"documents": documents, "queries": queries.numpy().tolist()}


def pylate_step(work: Path) -> None:
    from pylate import models

    exported = models.ColBERT(model_name_or_path=str(work / "tokenprune_export"), device="cpu")
    theirs = {"documents": [v.tolist() for v in exported.encode(TEXTS, is_query=False, convert_to_numpy=True)],
              "queries": [v.tolist() for v in exported.encode(QUERIES, is_query=True, convert_to_numpy=True)]}  # fmt: skip
    report = compare_vectors(json.loads((work / "tokenprune.json").read_text()), theirs)
    print(json.dumps({"tokenprune's export read by PyLate": report}))
    # PyLate's own model on the same backbone, with ColBERT's markers and attending to [MASK] like tokenprune.
    own = models.ColBERT(model_name_or_path=(work / "backbone.txt").read_text(), embedding_size=128, device="cpu",
                         query_prefix="[unused0]", document_prefix="[unused1]", attend_to_expansion_tokens=True)  # fmt: skip
    own.save(str(work / "pylate_model"))
    (work / "pylate_own.json").write_text(json.dumps({
        "documents": [v.tolist() for v in own.encode(TEXTS, is_query=False, convert_to_numpy=True)],
        "queries": [v.tolist() for v in own.encode(QUERIES, is_query=True, convert_to_numpy=True)],
    }))  # fmt: skip


def compare_vectors(ours: dict[str, list], theirs: dict[str, list]) -> dict[str, object]:
    """Per side: vectors counted alike, and the largest absolute difference of any component."""
    report: dict[str, object] = {}
    for side in ("documents", "queries"):
        pairs = [(np.asarray(a), np.asarray(b)) for a, b in zip(ours[side], theirs[side], strict=True)]
        same_shapes = all(a.shape == b.shape for a, b in pairs)
        report[side] = {
            "vectors": [list(a.shape) for a, _ in pairs],
            "same_shapes": same_shapes,
            "max_abs_difference": max(float(np.abs(a - b).max()) for a, b in pairs) if same_shapes else None,
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("side", choices=["tokenprune", "pylate"])
    parser.add_argument("--work", type=Path, required=True, help="Folder shared by the two steps.")
    parser.add_argument("--compare", action="store_true", help="tokenprune side, after the pylate step: read PyLate's folder.")
    options = parser.parse_args()
    options.work.mkdir(parents=True, exist_ok=True)
    if options.side == "tokenprune":
        tokenprune_step(options.work, options.compare)
    else:
        pylate_step(options.work)


if __name__ == "__main__":
    main()
