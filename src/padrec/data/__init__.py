"""Data layer: readers for published formats, preprocessing, processed datasets, splits.

Knows nothing of models.
"""

from padrec.data.dataset import HeldOutItems, SequenceDataset
from padrec.data.errors import DataError
from padrec.data.holdout import HoldoutConfig, apply_holdout, holdout_item_ids
from padrec.data.loading import DataConfig, load_dataset, load_holdout_item_ids, resolve_dataset
from padrec.data.preprocess import PreprocessConfig, build_sequence_dataset
from padrec.data.protocols import EvalSet, Split, SplitConfig, make_split
from padrec.data.readers import read_faerec_txt, read_interactions, read_pad_csv, read_recbole_atomic
from padrec.data.stats import ItemStats, compute_item_stats

__all__ = [
    "DataConfig",
    "DataError",
    "EvalSet",
    "HeldOutItems",
    "HoldoutConfig",
    "ItemStats",
    "PreprocessConfig",
    "SequenceDataset",
    "Split",
    "SplitConfig",
    "apply_holdout",
    "build_sequence_dataset",
    "compute_item_stats",
    "holdout_item_ids",
    "load_dataset",
    "load_holdout_item_ids",
    "make_split",
    "read_faerec_txt",
    "read_interactions",
    "read_pad_csv",
    "read_recbole_atomic",
    "resolve_dataset",
]
