"""Data layer: readers for published formats, preprocessing, processed datasets, splits.

Knows nothing of models.
"""

from padrec.data.dataset import SequenceDataset
from padrec.data.errors import DataError
from padrec.data.protocols import EvalSet, Split, SplitConfig, make_split
from padrec.data.stats import ItemStats, compute_item_stats

__all__ = [
    "DataError",
    "EvalSet",
    "ItemStats",
    "SequenceDataset",
    "Split",
    "SplitConfig",
    "compute_item_stats",
    "make_split",
]
