"""Readers that turn a collection into plain documents, queries and judgments.

Each kind of source is registered in :data:`SOURCE_KINDS` (a local folder in
BEIR layout, a classic collection's original files, an ir_datasets id); every
one streams documents one at a time, so a large corpus is never held in memory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenprune.data.classic import ClassicCollection
from tokenprune.data.records import CollectionSource, Document, Judgment, Query, join_fields
from tokenprune.data.spec import DatasetSpec
from tokenprune.errors import TokenpruneError
from tokenprune.io import iter_jsonl

__all__ = [
    "OFFLINE_DATA_ENV",
    "irds_stream",
    "BeirFolder",
    "IrdsCollection",
    "offline_data_dir",
    "irds_download_paths",
    "seed_irds_home",
    "open_collection",
    "IRDS_KIND",
    "SOURCE_KINDS",
    "SourceKind",
    "register_source",
    "source_keys",
]

log = logging.getLogger(__name__)

OFFLINE_DATA_ENV = "TOKENPRUNE_DATA_DIR"


def irds_stream(items: Iterable[Any], irds_id: str) -> Iterator[Any]:
    """``items`` of an ir_datasets iterator, with a failed download turned into an actionable error.

    ir_datasets fetches files lazily, on the first item, and reports a
    failure as a network traceback from deep inside requests.
    """
    try:
        yield from items
    except OSError as error:  # requests' errors are OSErrors, as are ir_datasets' own download errors
        home = os.environ.get("IR_DATASETS_HOME", "~/.ir_datasets")
        raise TokenpruneError(
            f"ir_datasets could not fetch a file of {irds_id!r} ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:160]}); without network access, put the files it downloads in an "
            f"offline folder (docs/troubleshooting.md, 'Offline data') or in its cache under {home!r}"
        ) from None


class BeirFolder:
    """A collection in BEIR layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

    Splits are read from ``qrels/<split name>.tsv``; the ir_datasets ids a
    spec may map them to are not used here.
    """

    def __init__(self, folder: str | os.PathLike[str], spec: DatasetSpec) -> None:
        self.folder = Path(folder)
        self.spec = spec
        self.description = f"BEIR folder {self.folder}"
        if not self.folder.is_dir():
            raise TokenpruneError(f"dataset {spec.name!r}: BEIR folder {str(self.folder)!r} does not exist")
        for required in ("corpus.jsonl", "queries.jsonl"):
            if not (self.folder / required).is_file():
                raise TokenpruneError(f"dataset {spec.name!r}: {str(self.folder / required)!r} is missing")
        available = sorted(path.stem for path in (self.folder / "qrels").glob("*.tsv"))
        for split in spec.splits:
            if split not in available:
                raise TokenpruneError(
                    f"dataset {spec.name!r}: split {split!r} needs qrels/{split}.tsv in {str(self.folder)!r}; "
                    f"available splits: {available or 'none'}"
                )

    def documents(self) -> Iterator[Document]:
        path = self.folder / "corpus.jsonl"
        for line_number, record in iter_jsonl(path):
            if "_id" not in record:
                raise TokenpruneError(f"{path}:{line_number}: document has no '_id'")
            yield Document(str(record["_id"]), join_fields(record, self.spec.document_fields))

    def judgments(self, split: str) -> Iterator[Judgment]:
        path = self.folder / "qrels" / f"{split}.tsv"
        with open(path, encoding="utf-8") as lines:
            for line_number, line in enumerate(lines, start=1):
                columns = line.rstrip("\r\n").split("\t")
                if line_number == 1 and columns[0] == "query-id":
                    continue
                if not line.strip():
                    continue
                if len(columns) != 3:
                    raise TokenpruneError(
                        f"{path}:{line_number}: expected 3 tab-separated columns, found {len(columns)}"
                    )
                try:
                    relevance = int(columns[2])
                except ValueError:
                    raise TokenpruneError(f"{path}:{line_number}: relevance {columns[2]!r} is not an integer") from None
                yield Judgment(columns[0], columns[1], relevance)

    def queries(self, split: str) -> Iterator[Query]:
        # BEIR keeps every query in one file; a split's queries are those its qrels judge.
        judged = {judgment.query_id for judgment in self.judgments(split)}
        path = self.folder / "queries.jsonl"
        for line_number, record in iter_jsonl(path):
            if "_id" not in record:
                raise TokenpruneError(f"{path}:{line_number}: query has no '_id'")
            if str(record["_id"]) in judged:
                yield Query(str(record["_id"]), " ".join(str(record.get("text", "")).split()))


class IrdsCollection:
    """A collection loaded through ir_datasets (documents, and queries/qrels per split)."""

    def __init__(self, spec: DatasetSpec) -> None:
        import ir_datasets

        if spec.irds_id is None:
            raise TokenpruneError(f"dataset {spec.name!r}: an ir_datasets collection needs 'irds_id'")
        self.spec = spec
        self.irds_id: str = spec.irds_id
        self.description = f"ir_datasets {spec.irds_id}"
        self._datasets = {}
        for role, irds_id in [("documents", spec.irds_id), *spec.splits.items()]:
            try:
                self._datasets[role] = ir_datasets.load(irds_id)
            except KeyError:
                raise TokenpruneError(f"dataset {spec.name!r}: {irds_id!r} is not an ir_datasets id") from None
        if not self._datasets["documents"].has_docs():
            raise TokenpruneError(f"dataset {spec.name!r}: ir_datasets id {spec.irds_id!r} has no documents")
        for split in spec.splits:
            if not (self._datasets[split].has_queries() and self._datasets[split].has_qrels()):
                raise TokenpruneError(
                    f"dataset {spec.name!r}: split {split!r} ({spec.splits[split]!r}) lacks queries or qrels in ir_datasets"
                )

    def documents(self) -> Iterator[Document]:
        for document in irds_stream(self._datasets["documents"].docs_iter(), self.irds_id):
            yield Document(str(document.doc_id), join_fields(document, self.spec.document_fields))

    def queries(self, split: str) -> Iterator[Query]:
        for query in irds_stream(self._datasets[split].queries_iter(), self.spec.splits[split]):
            text = getattr(query, "text", None)
            yield Query(str(query.query_id), " ".join(str(text if text is not None else query.default_text()).split()))

    def judgments(self, split: str) -> Iterator[Judgment]:
        for qrel in irds_stream(self._datasets[split].qrels_iter(), self.spec.splits[split]):
            yield Judgment(str(qrel.query_id), str(qrel.doc_id), int(qrel.relevance))


def offline_data_dir(configured: str | None = None) -> Path | None:
    """The offline data directory: ``$TOKENPRUNE_DATA_DIR`` if set, else the configured one."""
    chosen = os.environ.get(OFFLINE_DATA_ENV) or configured
    return Path(chosen).expanduser() if chosen else None


def irds_download_paths(irds_id: str) -> list[str]:
    """Cache paths (relative to ``$IR_DATASETS_HOME/<top-level id>``) of every file ir_datasets may download for ``irds_id``."""
    import ir_datasets

    catalogue = json.loads((Path(ir_datasets.__file__).parent / "etc" / "downloads.json").read_text())
    top = irds_id.split("/")[0]
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "cache_path" in node:
                found.append(node["cache_path"])
            else:
                for child in node.values():
                    walk(child)

    walk(catalogue.get(top, {}))
    return found


def seed_irds_home(irds_id: str, offline_folder: Path, irds_home: Path) -> list[Path]:
    """Link the files ir_datasets would download for ``irds_id`` from ``offline_folder`` into its cache.

    ir_datasets reads a file already present in its cache instead of
    downloading it, so this makes an ir_datasets id work offline. A file is
    matched by the base name of its cache path (``cran.tar.gz``).

    Returns
    -------
    list of Path
        The cache entries created or already present.
    """
    top = irds_id.split("/")[0]
    seeded: list[Path] = []
    for cache_path in irds_download_paths(irds_id):
        candidate = offline_folder / Path(cache_path).name
        if not candidate.is_file():
            continue
        target = irds_home / top / cache_path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            try:
                target.symlink_to(candidate.resolve())
            except OSError:
                shutil.copyfile(candidate, target)
        seeded.append(target)
    return seeded


@dataclass(frozen=True)
class SourceKind:
    """One kind of collection source, in :data:`SOURCE_KINDS`.

    Parameters
    ----------
    name
        What the kind is called in messages and docs.
    keys
        The ``datasets.<name>`` config keys that select this kind (each, and any setting
        the kind reads, also needs its entry in the schema's ``$defs/dataset``).
    applies
        ``(spec, offline folder or None) -> bool``: whether this kind reads ``spec``.
    opens
        ``(spec, offline folder or None, irds_home) -> CollectionSource``.
    """

    name: str
    keys: tuple[str, ...]
    applies: Callable[[DatasetSpec, Path | None], bool]
    opens: Callable[[DatasetSpec, Path | None, Path], CollectionSource]


#: Every kind of source, in precedence order: the first that applies to a spec reads it.
SOURCE_KINDS: list[SourceKind] = []
#: The last kind, whatever registers: an ir_datasets id (or the offline files it would download).
IRDS_KIND = "ir_datasets id"


def register_source(
    name: str, keys: tuple[str, ...], applies: Callable[[DatasetSpec, Path | None], bool]
) -> Callable[[Callable[[DatasetSpec, Path | None, Path], CollectionSource]], Callable[..., CollectionSource]]:
    """Decorator adding an opener to :data:`SOURCE_KINDS`, before the ir_datasets fallback.

    A new kind is one module that defines its reader and registers it (imported by
    :mod:`tokenprune.data`), plus its config keys in the schema (docs/architecture.md).
    """

    def add(opens: Callable[[DatasetSpec, Path | None, Path], CollectionSource]) -> Callable[..., CollectionSource]:
        kind = SourceKind(name, keys, applies, opens)
        fallback = [index for index, known in enumerate(SOURCE_KINDS) if known.name == IRDS_KIND]
        SOURCE_KINDS.insert(fallback[0] if fallback else len(SOURCE_KINDS), kind)
        return opens

    return add


def source_keys() -> list[str]:
    """Config keys that select a source, over every registered kind: a dataset must set one."""
    return sorted({key for kind in SOURCE_KINDS for key in kind.keys})


@register_source("BEIR folder", ("beir_folder",), lambda spec, offline: bool(spec.beir_folder))
def _open_beir_folder(spec: DatasetSpec, offline: Path | None, irds_home: Path) -> CollectionSource:
    return BeirFolder(Path(str(spec.beir_folder)).expanduser(), spec)


@register_source("classic collection", ("classic",), lambda spec, offline: bool(spec.classic))
def _open_classic(spec: DatasetSpec, offline: Path | None, irds_home: Path) -> CollectionSource:
    folder = Path(spec.classic_folder).expanduser() if spec.classic_folder else offline
    if folder is None:
        raise TokenpruneError(
            f"dataset {spec.name!r}: set classic_folder, or offline_folder with {OFFLINE_DATA_ENV}, for {spec.classic!r}"
        )
    return ClassicCollection(str(spec.classic), folder, spec)


@register_source(
    "offline BEIR folder",
    ("offline_folder",),
    lambda spec, offline: offline is not None and (offline / "corpus.jsonl").is_file(),
)
def _open_offline_beir_folder(spec: DatasetSpec, offline: Path | None, irds_home: Path) -> CollectionSource:
    assert offline is not None  # applies() checked it
    return BeirFolder(offline, spec)


def _open_irds(spec: DatasetSpec, offline: Path | None, irds_home: Path) -> CollectionSource:
    if not spec.irds_id:
        if offline is None:
            raise TokenpruneError(
                f"dataset {spec.name!r} is read from the offline folder {spec.offline_folder!r} only: set "
                f"{OFFLINE_DATA_ENV} (or offline_data_dir) to the folder that holds it"
            )
        raise TokenpruneError(
            f"dataset {spec.name!r}: no BEIR folder found at {str(offline)!r} and no irds_id to fall back on"
        )
    if offline is not None:
        if not offline.is_dir():
            raise TokenpruneError(f"dataset {spec.name!r}: offline folder {str(offline)!r} does not exist")
        seeded = seed_irds_home(spec.irds_id, offline, irds_home)
        log.info("seeded ir_datasets cache for %s with %s", spec.irds_id, [str(path) for path in seeded] or "nothing")
    return IrdsCollection(spec)


# The fallback: last whatever registers later, after linking any offline files into ir_datasets' cache.
SOURCE_KINDS.append(SourceKind(IRDS_KIND, ("irds_id", "offline_folder"), lambda spec, offline: True, _open_irds))


def open_collection(spec: DatasetSpec, data_dir: Path | None, irds_home: Path) -> CollectionSource:
    """Open the source of a collection: the first kind of :data:`SOURCE_KINDS` that applies.

    Built in, in order: an explicit ``beir_folder``; a ``classic`` collection's files;
    ``<data_dir>/<offline_folder>`` when it holds a BEIR layout; else the ir_datasets id,
    after linking any files found in ``<data_dir>/<offline_folder>`` into ir_datasets' cache.

    ``IR_DATASETS_HOME`` must already point at ``irds_home`` when
    ir_datasets is first imported: it reads the variable at import time.
    """
    if not any(getattr(spec, key, None) or spec.extra.get(key) for key in source_keys()):
        raise TokenpruneError(
            f"dataset {spec.name!r}: set one of {', '.join(map(repr, source_keys()))} to say where it comes from"
            " (none is given)"
        )
    offline = data_dir / spec.offline_folder if data_dir and spec.offline_folder else None
    kind = next(kind for kind in SOURCE_KINDS if kind.applies(spec, offline))
    return kind.opens(spec, offline, irds_home)
