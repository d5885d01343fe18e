"""Data loading: one reader for tabular files, one preparer per task."""

from thawkit.data.classification import ClassificationData, load_classification_data
from thawkit.data.tables import read_table

__all__ = ["ClassificationData", "load_classification_data", "read_table"]
