"""The configuration of one collection, as written under ``datasets:`` in config.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from tokenprune.errors import TokenpruneError

__all__ = ["DatasetSpec"]


@dataclass(frozen=True)
class DatasetSpec:
    """Where a collection comes from and how to read it.

    Parameters
    ----------
    name
        Short name used in output paths (``resources/data/<name>``).
    splits
        Split name to the ir_datasets id of its queries and qrels
        (``test: beir/scifact/test``). A BEIR folder reads
        ``qrels/<split name>.tsv`` instead, so for a BEIR-only dataset a
        list of split names is enough.
    irds_id
        ir_datasets id of the document collection, e.g. ``beir/scifact``.
    beir_folder
        A local folder in BEIR layout (``corpus.jsonl``, ``queries.jsonl``,
        ``qrels/<split>.tsv``); takes precedence over ``irds_id``.
    offline_folder
        Folder name under the offline data directory (``TOKENPRUNE_DATA_DIR``)
        holding either a BEIR layout or the files ir_datasets would download.
    document_fields
        Record fields joined with a space to form the passage text; fields a
        record lacks are skipped. Cranfield's ``text`` already starts with the
        title, so it uses ``[text]``.
    classic
        ``med``, ``adi`` or ``vaswani``: read the collection's original files
        (from ``classic_folder``, or ``<offline data dir>/<offline_folder>``).
    classic_folder
        Folder of a classic collection's files.
    relevance_gain
        Optional map from the collection's relevance code to the nDCG gain,
        e.g. Cranfield's ``{-1: 0, 1: 4, 2: 3, 3: 2, 4: 1}`` where 1 is the
        best grade. Every code seen must be mapped.
    """

    name: str
    splits: Mapping[str, str]
    irds_id: str | None = None
    beir_folder: str | None = None
    offline_folder: str | None = None
    document_fields: tuple[str, ...] = ("title", "text")
    classic: str | None = None
    classic_folder: str | None = None
    relevance_gain: Mapping[int, int] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, name: str, entry: Mapping[str, Any]) -> DatasetSpec:
        """Build a spec from a validated ``datasets.<name>`` config entry.

        Keys that belong to other stages (e.g. ``query_max_length``) are
        kept in :attr:`extra`.
        """
        if not entry.get("splits"):
            raise TokenpruneError(f"dataset {name!r}: 'splits' is empty; name at least one split")
        # The spec's own fields; any other key (a stage's setting, a registered source's key) goes to extra.
        known = {spec_field.name for spec_field in fields(cls)} - {"name", "extra"}
        gain = entry.get("relevance_gain")
        splits = entry["splits"]
        return cls(
            name=name,
            splits=dict(splits) if isinstance(splits, Mapping) else {split: split for split in splits},
            irds_id=entry.get("irds_id"),
            beir_folder=entry.get("beir_folder"),
            offline_folder=entry.get("offline_folder"),
            document_fields=tuple(entry.get("document_fields", ("title", "text"))),
            classic=entry.get("classic"),
            classic_folder=entry.get("classic_folder"),
            relevance_gain={int(code): int(value) for code, value in gain.items()} if gain else None,
            extra={key: value for key, value in entry.items() if key not in known},
        )

    def gain(self, code: int) -> int:
        """The nDCG gain of a raw relevance code."""
        if self.relevance_gain is None:
            return code
        try:
            return self.relevance_gain[code]
        except KeyError:
            raise TokenpruneError(
                f"dataset {self.name!r}: relevance code {code} is not in relevance_gain "
                f"(mapped codes: {sorted(self.relevance_gain)})"
            ) from None
