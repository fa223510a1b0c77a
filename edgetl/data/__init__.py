"""Datasets, splits and the training-side pre-processing."""

from edgetl.data.examples import DataSplits, Examples, RawDataset
from edgetl.data.load import load_splits

__all__ = ["DataSplits", "Examples", "RawDataset", "load_splits"]
