"""RuSentiment data: the one place that reads, checks, splits and tokenises it."""
from .rusentiment import LABELS, DataError, Splits, load_splits, resolve_data_dir
from .encode import Encoded, encode_texts

__all__ = ["LABELS", "DataError", "Splits", "load_splits", "resolve_data_dir", "Encoded", "encode_texts"]
