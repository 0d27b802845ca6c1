"""The labelled data: the one place that reads, checks, splits and tokenises it — RuSentiment (the
benchmark, ``rusentiment.py``) or a user's own texts (``tables.py``)."""
from .rusentiment import LABELS, load_splits, resolve_data_dir
from .splits import DataError, Splits
from .tables import load_table_splits, splits_from_record
from .encode import Encoded, encode_texts

__all__ = ["LABELS", "DataError", "Splits", "load_splits", "load_table_splits", "splits_from_record",
           "resolve_data_dir", "Encoded", "encode_texts"]
