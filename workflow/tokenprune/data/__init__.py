"""Data stage: read a collection (BEIR folder or ir_datasets id) and normalise it."""

from tokenprune.data.prepare import prepare_dataset
from tokenprune.data.spec import DatasetSpec
from tokenprune.data.store import PreparedDataset

__all__ = ["DatasetSpec", "PreparedDataset", "prepare_dataset"]
