"""One GPU check, sized for a few minutes on a bare machine: training, encoding, MaxSim, memory, speed, the GPU lock.

    python benchmarks/gpu_check.py --device cuda --backbone PATH --output gpu_check.json
    python benchmarks/gpu_check.py --device cpu     # CI: the same code paths, the CPU against itself

Every check compares the device with the CPU on the same weights and inputs
(no data files: deterministic synthetic passages) and prints one table; the
exit status is 1 when a check fails. Needs torch, transformers, numpy, pandas,
scipy and pyarrow, and the library on PYTHONPATH (``workflow/``); no faiss,
snakemake or ir_measures. ``--backbone`` is any local BERT-style model folder
(a float16 copy of the embedded all-MiniLM-L6-v2 travels in 45 MB;
benchmarks/README.md, "GPU check").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from tokenprune.devices import claim_slot  # noqa: E402
from tokenprune.model import ColBERT, ColBERTConfig  # noqa: E402
from tokenprune.precision import autocast  # noqa: E402
from tokenprune.search import PackedQueries, _maxsim_chunk  # noqa: E402
from tokenprune.training import contrastive_loss  # noqa: E402

STRATEGIES = [
    ("none", None),
    ("first", 10),
    ("idf", 10),
    ("unused", 10),
    ("attention", 10),
    ("pool", 10),
    ("const", 10),
    ("attention_var", 10),
    ("pool_var", 10),
]
#: Vectors are L2-normalised: fp32 on two devices agrees to float rounding, half precision to its mantissa.
TOLERANCE = {"fp32 max |Δ|": 1e-3, "half min cosine": 0.99, "scores max |Δ|": 0.05}
#: Parameters no forward pass of ColBERT reads (BERT's pooler): they never get a gradient.
UNUSED_PARAMETERS = ("backbone.pooler.",)
WORDS = [
    "protein",
    "cell",
    "gene",
    "expression",
    "patient",
    "study",
    "risk",
    "trial",
    "dose",
    "effect",
    "model",
    "data",
    "result",
    "method",
    "analysis",
    "passage",
    "query",
    "retrieval",
    "index",
    "token",
    "vector",
    "score",
    "rank",
    "river",
    "city",
    "history",
    "music",
    "energy",
    "water",
    "market",
]


def synthetic_texts(count: int, words: tuple[int, int], seed: int) -> list[str]:
    """Deterministic pseudo-sentences of ``words`` (min, max) words each."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(*words))) + "." for _ in range(count)]


def build_model(backbone: str, strategy: str, k: int | None, device: torch.device) -> ColBERT:
    config = ColBERTConfig(
        backbone=backbone,
        strategy=strategy,
        k=k,
        dim=128,
        query_max_length=32,
        passage_max_length=180,
        normalize=True,
        query_expansion=False,
        candidate_tokens="content",
        projection_init="random",
    )
    torch.manual_seed(0)  # the same random projection on every device
    vocabulary = None
    if strategy == "idf":
        from tokenprune.backbone import load_tokenizer

        vocabulary = len(load_tokenizer(backbone).get_vocab())
    idf = torch.linspace(0.1, 10.0, vocabulary) if vocabulary else None
    model = ColBERT.from_backbone(config, idf=idf).float()
    return model.to(device)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_training(backbone: str, device: torch.device, batch: int) -> list[dict[str, Any]]:
    """A bf16 and an fp32 step of each strategy: finite loss, a finite gradient on every trainable parameter."""
    queries = synthetic_texts(batch, (4, 12), 1)
    positives, negatives = synthetic_texts(batch, (40, 160), 2), synthetic_texts(batch, (40, 160), 3)
    rows = []
    for strategy, k in STRATEGIES:
        model = build_model(backbone, strategy, k, device).train()
        # A variable budget holds its mean over a collection: here, the check's own passages.
        model.fit_selectors([positives + negatives], [model.selector])
        for precision in ("fp32", "bf16"):
            timings = []
            for attempt in range(3 if device.type == "cuda" else 2):  # the first is a warm-up
                model.zero_grad(set_to_none=True)
                synchronise(device)
                start = time.perf_counter()
                with autocast(device, precision):
                    loss = contrastive_loss(model, queries, positives, negatives)
                loss.backward()
                synchronise(device)
                if attempt:
                    timings.append(time.perf_counter() - start)
            trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
            expected = [(name, p) for name, p in trainable if not name.startswith(UNUSED_PARAMETERS)]
            missing = [name for name, p in expected if p.grad is None or not torch.isfinite(p.grad).all()]
            rows.append(
                {
                    "check": f"train {strategy} {precision}",
                    "value": f"loss {loss.item():.4f}, {len(expected) - len(missing)}/{len(expected)} grads",
                    "tolerance": "finite, all",
                    "passed": bool(torch.isfinite(loss).item() and not missing),
                    "triples_per_s": batch / float(np.mean(timings)),
                    "missing": missing[:5],
                }
            )
        del model
    return rows


def _masked(vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return vectors.float().cpu()[mask.cpu()]


def check_encoding(backbone: str, device: torch.device, passages: int) -> tuple[list[dict[str, Any]], ColBERT]:
    """The device's passage vectors against the CPU's, in fp32 and in the half precision it encodes with."""
    texts = synthetic_texts(passages, (20, 200), 4)
    reference_model = build_model(backbone, "none", None, torch.device("cpu")).eval()
    with torch.inference_mode():
        reference = reference_model.encode_passages(texts)
    model = build_model(backbone, "none", None, device).eval()
    half = "fp16" if device.type == "cuda" else "bf16"
    rows = []
    with torch.inference_mode():
        ours = model.encode_passages(texts)
        difference = (_masked(ours.vectors, ours.mask) - _masked(reference.vectors, reference.mask)).abs().max().item()
        rows.append(
            {
                "check": "encode fp32 vs CPU",
                "value": f"max |Δ| {difference:.2e}",
                "tolerance": f"<= {TOLERANCE['fp32 max |Δ|']:g}",
                "passed": difference <= TOLERANCE["fp32 max |Δ|"],
            }
        )
        with autocast(device, half):
            halved = model.encode_passages(texts)
        cosine = torch.nn.functional.cosine_similarity(
            _masked(halved.vectors, halved.mask), _masked(reference.vectors, reference.mask), dim=-1
        )
        rows.append(
            {
                "check": f"encode {half} vs CPU fp32",
                "value": f"min cosine {cosine.min().item():.5f}",
                "tolerance": f">= {TOLERANCE['half min cosine']}",
                "passed": cosine.min().item() >= TOLERANCE["half min cosine"],
            }
        )
        # Throughput: the same passages, encoded again in batches as indexing does.
        repeats = max(1, 2048 // passages) if device.type == "cuda" else 1
        synchronise(device)
        start = time.perf_counter()
        for _ in range(repeats):
            for first in range(0, passages, 256):
                with autocast(device, half):
                    model.encode_passages(texts[first : first + 256])
        synchronise(device)
        rate = repeats * passages / (time.perf_counter() - start)
    rows.append(
        {"check": f"encode {half} throughput", "value": f"{rate:,.0f} passages/s", "tolerance": "", "passed": True}
    )
    return rows, model


def check_maxsim(model: ColBERT, device: torch.device, documents: int) -> list[dict[str, Any]]:
    """Exact MaxSim of the same fp16 vectors on the device and on the CPU: same top 10, scores within tolerance; GB/s."""
    torch.manual_seed(1)
    queries = synthetic_texts(16, (4, 12), 5)
    with torch.inference_mode():
        query_vectors, query_mask = model.encode_queries(queries)
        passages = model.encode_passages(synthetic_texts(256, (20, 200), 6))
    stored = passages.vectors[passages.mask].half()
    lengths = passages.mask.sum(dim=1)
    cpu_scores = _maxsim_chunk(
        PackedQueries.pack(query_vectors.float().cpu(), query_mask.cpu()), stored.float().cpu(), lengths.cpu()
    )
    packed = PackedQueries.pack(
        query_vectors.to(device, stored.dtype if device.type == "cuda" else torch.float32), query_mask.to(device)
    )
    vectors = stored.to(device) if device.type == "cuda" else stored.float()
    ours = _maxsim_chunk(packed, vectors, lengths.to(device)).cpu()
    same_top = all(
        set(a.tolist()) == set(b.tolist())
        for a, b in zip(cpu_scores.topk(10).indices, ours.topk(10).indices, strict=True)
    )
    difference = (ours - cpu_scores).abs().max().item()
    rows = [
        {
            "check": "MaxSim top 10 vs CPU",
            "value": "same" if same_top else "different",
            "tolerance": "same",
            "passed": same_top,
        },
        {
            "check": "MaxSim scores vs CPU",
            "value": f"max |Δ| {difference:.2e}",
            "tolerance": f"<= {TOLERANCE['scores max |Δ|']:g}",
            "passed": difference <= TOLERANCE["scores max |Δ|"],
        },
    ]
    # Bandwidth: random unit vectors in the index's layout, about 50 a document as a pruned index holds.
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    synthetic_lengths = torch.full((documents,), 50, device=device)
    synthetic = torch.nn.functional.normalize(torch.randn(documents * 50, 128, device=device), dim=-1).to(dtype)
    packed = PackedQueries.pack(query_vectors.to(device, dtype), query_mask.to(device))
    _maxsim_chunk(packed, synthetic[: 50 * 16], synthetic_lengths[:16])
    synchronise(device)
    start = time.perf_counter()
    _maxsim_chunk(packed, synthetic, synthetic_lengths)
    synchronise(device)
    seconds = time.perf_counter() - start
    rows.append(
        {
            "check": "MaxSim bandwidth",
            "value": f"{synthetic.numel() * synthetic.element_size() / seconds / 1e9:,.1f} GB/s ({documents:,} docs x 50 vectors, 16 queries)",
            "tolerance": "",
            "passed": True,
        }
    )
    return rows


def check_lock() -> list[dict[str, Any]]:
    """Two jobs sharing one GPU: the second waits for the first's lock, and gets it when the first exits."""
    with tempfile.TemporaryDirectory() as folder:
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time; sys.path.insert(0, sys.argv[1]); from tokenprune.devices import claim_slot; "
                "claim_slot(['gpu-check'], sys.argv[2]); print('held', flush=True); time.sleep(3)",
                str(Path(__file__).resolve().parents[1] / "workflow"),
                folder,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = False
        try:
            claim_slot(["gpu-check"], folder, timeout=0.5, poll=0.1)
        except Exception:  # noqa: BLE001 - TokenpruneError expected: the slot is held
            refused = True
        start = time.perf_counter()
        claim_slot(["gpu-check"], folder, timeout=30, poll=0.1)
        waited = time.perf_counter() - start
        holder.wait()
    passed = refused and waited > 1.0
    return [
        {
            "check": "GPU lock, two jobs",
            "value": f"second refused while held, got it after {waited:.1f} s",
            "tolerance": "wait, then claim",
            "passed": passed,
        }
    ]


def write_fp16_backbone(backbone: str, output: Path) -> None:
    """A copy of ``backbone``'s folder with its weights in float16: what a GPU machine without the package gets."""
    import shutil

    from safetensors.torch import load_file, save_file

    from tokenprune.backbone import resolve_backbone

    source = Path(resolve_backbone(backbone))
    if output.exists():
        shutil.rmtree(output)
    shutil.copytree(source, output, ignore=shutil.ignore_patterns("model.safetensors", "README.md"))
    weights = {name: tensor.half().contiguous() for name, tensor in load_file(source / "model.safetensors").items()}
    save_file(weights, output / "model.safetensors", metadata={"format": "pt"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the first GPU) or cpu.")
    parser.add_argument("--backbone", default="embedded", help="'embedded' or a local model folder.")
    parser.add_argument("--batch", type=int, help="Triples per training step (default 32 on CUDA, 8 on the CPU).")
    parser.add_argument(
        "--passages", type=int, help="Passages encoded on both devices (default 256 on CUDA, 32 on the CPU)."
    )
    parser.add_argument(
        "--documents",
        type=int,
        help="Documents of the MaxSim bandwidth run (default 200,000 on CUDA, 2,000 on the CPU).",
    )
    parser.add_argument("--output", type=Path, help="JSON file for the table and the machine.")
    parser.add_argument(
        "--write-fp16-backbone", type=Path, metavar="FOLDER", help="Write a float16 copy of --backbone there and stop."
    )
    args = parser.parse_args(argv)
    if args.write_fp16_backbone:
        write_fp16_backbone(args.backbone, args.write_fp16_backbone)
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    on_gpu = device.type == "cuda"
    started = time.perf_counter()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    rows = check_training(args.backbone, device, args.batch or (32 if on_gpu else 8))
    encoding, model = check_encoding(args.backbone, device, args.passages or (256 if on_gpu else 32))
    rows += encoding
    rows += check_maxsim(model, device, args.documents or (200_000 if on_gpu else 2_000))
    rows += check_lock()
    if on_gpu:
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        rows.append({"check": "GPU memory peak", "value": f"{peak:.2f} GiB", "tolerance": "", "passed": True})
    machine = {
        "device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "seconds": round(time.perf_counter() - started, 1),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    width = max(len(row["check"]) for row in rows)
    print(
        f"tokenprune GPU check on {machine['device']} (torch {machine['torch']}, transformers {machine['transformers']})"
    )
    for row in rows:
        speed = f"  {row['triples_per_s']:.1f} triples/s" if "triples_per_s" in row else ""
        missing = f"  missing: {row['missing']}" if row.get("missing") else ""
        print(
            f"{'ok  ' if row['passed'] else 'FAIL'} {row['check']:<{width}}  {row['value']}{speed}  [{row['tolerance']}]{missing}"
        )
    print(f"{machine['seconds']} s")
    if args.output:
        args.output.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2, default=str))
    return 0 if all(row["passed"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
