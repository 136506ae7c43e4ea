"""Where the pipeline keeps each artefact.

The Snakemake rules (``workflow/rules/common.smk``) build every path from
these templates and hand the library the paths of their inputs and outputs;
the library reads only the fixed file names inside an artefact's folder.
Paths are relative to the workflow's working directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tokenprune.errors import TokenpruneError
from tokenprune.strategies import POSTHOC_STRATEGIES, check_strategy_k

__all__ = [
    "DATA_DIR",
    "IDF",
    "TRIPLES",
    "MODEL_ID",
    "SYSTEM_MODEL_DIR",
    "SYSTEM_INDEX_DIR",
    "MODEL_DIR",
    "INDEX_DIR",
    "INDEX_SHARD_DIR",
    "ANN_INDEX",
    "RUN",
    "SYSTEM_RUN",
    "SYSTEM_METRICS",
    "SYSTEM_PER_QUERY",
    "UNTRAINED_ID",
    "BM25_ID",
    "POSTHOC_PREFIX",
    "STEP0",
    "POSTHOC_ID",
    "STEP0_ID",
    "COMPRESSED_SUFFIX",
    "COMPRESSED_INDEX_DIR",
    "COMPRESSED_RUN",
    "SUMMARY_DIR",
    "TRAINING_SUMMARY_DIR",
    "UNTRAINED_MODEL_DIR",
    "CHECKPOINT_DIR",
    "COMPARISON_STEM",
    "CONTRAST_STEM",
    "HEADLINE",
    "HEADLINE_STEM",
    "BUDGET_STEM",
    "BUDGETS",
    "PAIRS_STEM",
    "TRADEOFF_STEM",
    "LOSS_STEM",
    "POSITIONS_STEM",
    "TOP_TOKENS_STEM",
    "COMPARISON",
    "CONTRAST",
    "PAIRS",
    "CLAIMS",
    "TRAINING_LOSS",
    "DIAGNOSTICS_DIR",
    "KEPT_POSITIONS",
    "KEPT_TOKENS",
    "TRADEOFF_PLOT",
    "measure_slug",
    "tradeoff_plot",
    "System",
]

DATA_DIR = "resources/data/{dataset}"
IDF = "results/idf/{dataset}.safetensors"
TRIPLES = "results/triples/{dataset}/{split}.parquet"
# {dataset} is the training collection, {corpus} the collection searched.
MODEL_ID = "{dataset}/{strategy}/k{k}/seed{seed}"
SYSTEM_MODEL_DIR = "results/models/{system}"
SYSTEM_INDEX_DIR = "results/indexes/{system}/{corpus}"
MODEL_DIR = SYSTEM_MODEL_DIR.replace("{system}", MODEL_ID)
INDEX_DIR = SYSTEM_INDEX_DIR.replace("{system}", MODEL_ID)
# One shard of an index encoded in several jobs (indexing.shards > 1); removed once merged.
INDEX_SHARD_DIR = INDEX_DIR + ".shards/{shard}"
ANN_INDEX = "results/ann/" + MODEL_ID + "/{corpus}.faiss"
RUN = "results/runs/" + MODEL_ID + "/{corpus}/{split}.{mode}.trec"
# {system} is a model id, or "bm25" for the BM25 reference (mode "bm25").
SYSTEM_RUN = "results/runs/{system}/{corpus}/{split}.{mode}.trec"
SYSTEM_METRICS = "results/metrics/{system}/{corpus}/{split}.{mode}.json"
SYSTEM_PER_QUERY = "results/metrics/{system}/{corpus}/{split}.{mode}.perquery.tsv"
UNTRAINED_ID = "untrained/none/kall/seed0"
BM25_ID = "bm25"
# A post-hoc system prunes the vectors of an unpruned model ("none") at indexing only:
# {dataset}/posthoc-{strategy}/k{k}/seed{seed} uses the model {dataset}/none/kall/seed{seed}.
POSTHOC_PREFIX = "posthoc-"
# The model as training initialises it, before any step: {dataset}/step0/kall/seed{seed}.
STEP0 = "step0"
POSTHOC_ID = "{dataset}/" + POSTHOC_PREFIX + "{strategy}/k{k}/seed{seed}"
STEP0_ID = "{dataset}/" + STEP0 + "/kall/seed{seed}"
# A compressed copy of a system's index (compression.bits): the system id gains "/r{bits}",
# e.g. scifact/first/k10/seed42/r2, searched exactly with the vectors decoded from the codes.
COMPRESSED_SUFFIX = "/r{bits}"
COMPRESSED_INDEX_DIR = "results/indexes/" + MODEL_ID + COMPRESSED_SUFFIX + "/{corpus}"
COMPRESSED_RUN = "results/runs/" + MODEL_ID + COMPRESSED_SUFFIX + "/{corpus}/{split}.{mode}.trec"
# The comparison table and plots of one evaluation set in one retrieval mode.
SUMMARY_DIR = "results/summary/{corpus}/{split}.{mode}"
# Figures about the trained models themselves (loss curves).
TRAINING_SUMMARY_DIR = "results/summary/training/{dataset}"
# The reference model without training, and training checkpoints.
UNTRAINED_MODEL_DIR = SYSTEM_MODEL_DIR.format(system=UNTRAINED_ID)
CHECKPOINT_DIR = "results/checkpoints/" + MODEL_ID
# File stems of the report's tables and figures, inside the folders above.
COMPARISON_STEM = "comparison"
# In-loop minus post-hoc, per strategy and k, beside the comparison table.
CONTRAST_STEM = "inloop_vs_posthoc"
# Every pair of in-loop strategies at one k, tested.
PAIRS_STEM = "strategy_pairs"
# The report's opening table: the references and, per k, each strategy in the loop and post hoc.
HEADLINE_STEM = "headline"
# Per storage budget, each strategy's best system in the loop and post hoc within it.
BUDGET_STEM = "best_at_budget"
TRADEOFF_STEM = "index_size_vs_{slug}"
LOSS_STEM = "training_loss"
POSITIONS_STEM = "kept_positions"
TOP_TOKENS_STEM = "kept_tokens"
COMPARISON = f"{SUMMARY_DIR}/{COMPARISON_STEM}"
CONTRAST = f"{SUMMARY_DIR}/{CONTRAST_STEM}"
PAIRS = f"{SUMMARY_DIR}/{PAIRS_STEM}"
HEADLINE = f"{SUMMARY_DIR}/{HEADLINE_STEM}"
BUDGETS = f"{SUMMARY_DIR}/{BUDGET_STEM}"
# The verdicts on the paper's claims, over every evaluation set of the study.
CLAIMS = "results/summary/claims"
TRAINING_LOSS = f"{TRAINING_SUMMARY_DIR}/{LOSS_STEM}"
# Where the kept tokens sit and which they are, per searched collection.
DIAGNOSTICS_DIR = "results/summary/{corpus}/diagnostics"
KEPT_POSITIONS = f"{DIAGNOSTICS_DIR}/{POSITIONS_STEM}"
KEPT_TOKENS = f"{DIAGNOSTICS_DIR}/{TOP_TOKENS_STEM}"

_MODEL_ID_PATTERN = re.compile(
    r"(?P<dataset>[A-Za-z0-9_-]+)/(?P<posthoc>posthoc-)?(?P<strategy>[A-Za-z0-9_]+)/k(?P<k>all|\d+)/seed(?P<seed>\d+)"
    r"(?:/r(?P<bits>[1-8]))?"
)


# The index-size vs measure figure of one evaluation set; {slug} is measure_slug(measure).
TRADEOFF_PLOT = f"{SUMMARY_DIR}/{TRADEOFF_STEM}"


def measure_slug(measure: str) -> str:
    """A file-name-safe form of an ir_measures name: ``nDCG@10`` -> ``nDCG_10``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", measure).strip("_")


def tradeoff_plot(measure: str) -> str:
    """Path template (no suffix) of the index-size vs ``measure`` figure of one evaluation set."""
    return f"{SUMMARY_DIR}/{TRADEOFF_STEM.format(slug=measure_slug(measure))}"


@dataclass(frozen=True)
class System:
    """One searched system: a model id ``dataset/strategy/k{k}/seed{seed}``, or ``bm25``.

    Attributes
    ----------
    id
        The id as it appears in result paths.
    dataset
        Training collection, ``"untrained"`` for the untrained backbone, or
        ``"bm25"``.
    strategy
        Selection strategy (``"none"`` for unpruned models, the step-0 model and BM25).
    k
        Vectors kept per passage, or ``None`` for unpruned systems.
    seed
        Training seed (0 for the references).
    """

    id: str
    dataset: str
    strategy: str
    k: int | None
    seed: int
    #: The selection is applied at indexing only, to the vectors of the unpruned model.
    posthoc: bool = False
    #: The model as training initialises it, before any step.
    step0: bool = False
    #: Bits per dimension of the residual codes its index is stored as; ``None`` for float16.
    bits: int | None = None

    @classmethod
    def parse(cls, system_id: str) -> System:
        """Read a system id; raises ``ValueError`` naming the id when it has no known shape."""
        if system_id == BM25_ID:
            return cls(BM25_ID, BM25_ID, "none", None, 0)
        match = _MODEL_ID_PATTERN.fullmatch(system_id)
        if match is None:
            raise ValueError(
                f"{system_id!r} is not a system id: expected 'bm25' or 'dataset/strategy/k<k|all>/seed<n>[/r<bits>]'"
            )
        k = None if match["k"] == "all" else int(match["k"])
        step0 = match["strategy"] == STEP0 and not match["posthoc"]
        posthoc = bool(match["posthoc"])
        strategy = "none" if step0 else match["strategy"]
        try:
            # A post-hoc selection is a strategy with a number k; the step-0 model is unpruned (k=all).
            check_strategy_k(strategy, k)
        except TokenpruneError as error:
            raise ValueError(f"{system_id!r}: {error}") from None
        if posthoc and strategy not in POSTHOC_STRATEGIES:
            raise ValueError(f"{system_id!r}: only {list(POSTHOC_STRATEGIES)} are applied post hoc")
        bits = None if match["bits"] is None else int(match["bits"])
        return cls(
            system_id, match["dataset"], strategy, k, int(match["seed"]), posthoc=posthoc, step0=step0, bits=bits
        )

    @property
    def storage(self) -> str:
        """How the index stores a vector: ``"fp16"`` or ``"<bits>-bit"`` residual codes (BM25: ``""``)."""
        if self.kind == "bm25":
            return ""
        return "fp16" if self.bits is None else f"{self.bits}-bit"

    @property
    def uncompressed_id(self) -> str:
        """The id of the float16 system whose index this one compresses (its own id if not compressed)."""
        return self.id if self.bits is None else self.id.removesuffix(COMPRESSED_SUFFIX.format(bits=self.bits))

    @property
    def kind(self) -> str:
        """``"bm25"``, ``"untrained"``, ``"untrained-posthoc"``, ``"step0"``, ``"baseline"`` (trained,
        unpruned), ``"pruned"`` (selection in the training loop) or ``"posthoc"`` (selection at indexing only)."""
        if self.id == BM25_ID:
            return "bm25"
        if self.dataset == "untrained":
            return "untrained-posthoc" if self.posthoc else "untrained"
        if self.step0:
            return "step0"
        if self.posthoc:
            return "posthoc"
        return "baseline" if self.strategy == "none" else "pruned"

    @property
    def method(self) -> str:
        """The system without its seed: seeds of one method are averaged together."""
        if self.kind == "bm25":
            return self.id
        method = self.uncompressed_id.rsplit("/seed", 1)[0]
        return method if self.bits is None else method + COMPRESSED_SUFFIX.format(bits=self.bits)

    def run_mode(self, mode: str) -> str:
        """BM25 has one run whatever the dense retrieval mode is."""
        return "bm25" if self.kind == "bm25" else mode

    def metrics_path(self, corpus: str, split: str, mode: str, root: Path = Path(".")) -> Path:
        return root / SYSTEM_METRICS.format(system=self.id, corpus=corpus, split=split, mode=self.run_mode(mode))

    def per_query_path(self, corpus: str, split: str, mode: str, root: Path = Path(".")) -> Path:
        return root / SYSTEM_PER_QUERY.format(system=self.id, corpus=corpus, split=split, mode=self.run_mode(mode))

    def index_dir(self, corpus: str, root: Path = Path(".")) -> Path | None:
        """The system's index folder, or ``None`` for BM25 (whose index this pipeline does not measure)."""
        if self.kind == "bm25":
            return None
        return root / SYSTEM_INDEX_DIR.format(system=self.id, corpus=corpus)

    def model_dir(self, root: Path = Path(".")) -> Path | None:
        """The model that encodes the system's queries (for a post-hoc system, the unpruned model it prunes)."""
        if self.kind == "bm25":
            return None
        if self.posthoc:
            return root / MODEL_DIR.format(dataset=self.dataset, strategy="none", k="all", seed=self.seed)
        return root / SYSTEM_MODEL_DIR.format(system=self.uncompressed_id)
