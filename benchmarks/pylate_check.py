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

Token pooling is checked on the same footing: step ``tokenprune`` writes the
content-token vectors of SciFact passages and tokenprune's ``pool`` of them
(``k`` = each passage's count // ``pool_factor``, the clusters PyLate makes);
step ``pylate`` pools the same vectors with PyLate's own
``pool_embeddings_hierarchical`` (no protected token) and compares, per
passage, the vectors as sets.
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
POOL_FACTORS = (2, 3)
POOLED_PASSAGES = 64


def tokenprune_step(work: Path, compare: bool) -> None:
    import torch

    from tokenprune.backbone import EMBEDDED_BACKBONE, resolve_backbone
    from tokenprune.model import ColBERT, ColBERTConfig
    from tokenprune.pylate_format import write_pylate_folder

    settings = {
        "dim": 128,
        "normalize": True,
        "query_expansion": True,
        "candidate_tokens": "no_punctuation",
        "query_max_length": QUERY_LENGTH,
        "passage_max_length": DOCUMENT_LENGTH,
    }
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
    (work / "pooling.json").write_text(json.dumps(pooled_by_tokenprune(model)))


def pooled_by_tokenprune(model) -> dict[str, object]:  # noqa: ANN001
    """Content-token vectors of SciFact passages, and tokenprune's pool of each at every pool factor."""
    import os

    import torch

    from tokenprune.pooling import cluster_means, cosine_profiles, ward_clusters
    from tokenprune.selection import candidate_mask

    corpus = Path(os.environ["TOKENPRUNE_DATA_DIR"]) / "scifact" / "corpus.jsonl"
    with corpus.open(encoding="utf-8") as lines:
        texts = [json.loads(next(lines))["text"] for _ in range(POOLED_PASSAGES)]
    input_ids, attention_mask = model.tokenize_passages(texts)
    with torch.no_grad():
        vectors, view = model.encode_passage_tokens(input_ids, attention_mask, with_attention=False)
    members = candidate_mask(view, "content")
    documents = [vectors[row][members[row]] for row in range(len(texts))]
    pooled: dict[str, list] = {}
    for factor in POOL_FACTORS:
        pooled[str(factor)] = []
        for document in documents:
            everyone = torch.ones(1, len(document), dtype=torch.bool)
            labels = ward_clusters(cosine_profiles(document[None], everyone), everyone, max(len(document) // factor, 1))
            means, named = cluster_means(document[None], labels)
            pooled[str(factor)].append(means[named].tolist())
    return {"documents": [document.tolist() for document in documents], "pooled": pooled}


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
    theirs = {
        "documents": [v.tolist() for v in exported.encode(TEXTS, is_query=False, convert_to_numpy=True)],
        "queries": [v.tolist() for v in exported.encode(QUERIES, is_query=True, convert_to_numpy=True)],
    }
    report = compare_vectors(json.loads((work / "tokenprune.json").read_text()), theirs)
    print(json.dumps({"tokenprune's export read by PyLate": report}))
    print(json.dumps({"tokenprune's pool against PyLate's pool_factor": compare_pooling(exported, work)}))
    # PyLate's own model on the same backbone, with ColBERT's markers and attending to [MASK] like tokenprune.
    own = models.ColBERT(
        model_name_or_path=(work / "backbone.txt").read_text(),
        embedding_size=128,
        device="cpu",
        query_prefix="[unused0]",
        document_prefix="[unused1]",
        attend_to_expansion_tokens=True,
    )
    own.save(str(work / "pylate_model"))
    (work / "pylate_own.json").write_text(
        json.dumps(
            {
                "documents": [v.tolist() for v in own.encode(TEXTS, is_query=False, convert_to_numpy=True)],
                "queries": [v.tolist() for v in own.encode(QUERIES, is_query=True, convert_to_numpy=True)],
            }
        )
    )


def compare_pooling(model, work: Path) -> dict[str, object]:  # noqa: ANN001
    """PyLate's hierarchical pooling of the vectors tokenprune pooled, compared per passage as sets of rows."""
    import torch

    ours = json.loads((work / "pooling.json").read_text())
    documents = [torch.tensor(document) for document in ours["documents"]]
    report: dict[str, object] = {}
    for factor, pooled in ours["pooled"].items():
        theirs = model.pool_embeddings_hierarchical(documents, pool_factor=int(factor), protected_tokens=0)
        same_counts = [len(a) == len(b) for a, b in zip(pooled, theirs, strict=True)]
        differences = [
            float(np.abs(sorted_rows(np.asarray(a)) - sorted_rows(b.numpy())).max())
            for a, b, same in zip(pooled, theirs, same_counts, strict=True)
            if same
        ]
        report[f"pool_factor {factor}"] = {
            "passages": len(pooled),
            "vectors": [sum(len(a) for a in pooled), sum(len(b) for b in theirs)],
            "passages_with_equal_counts": sum(same_counts),
            "passages_within_1e-5": sum(difference <= 1e-5 for difference in differences),
            "max_abs_difference": max(differences) if differences else None,
        }
    return report


def sorted_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows in lexicographic order, so two sets of vectors compare position by position."""
    return matrix[np.lexsort(matrix.T[::-1])]


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
    parser.add_argument(
        "--compare", action="store_true", help="tokenprune side, after the pylate step: read PyLate's folder."
    )
    options = parser.parse_args()
    options.work.mkdir(parents=True, exist_ok=True)
    if options.side == "tokenprune":
        tokenprune_step(options.work, options.compare)
    else:
        pylate_step(options.work)


if __name__ == "__main__":
    main()
