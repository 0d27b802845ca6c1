"""Torch-free runtime for an exported student: ONNX Runtime + tokenizers + numpy.

    from inference import SentimentClassifier
    clf = SentimentClassifier.load("path/to/exported")
    clf("Отличный день!")  # {"label": "positive", "score": 0.93}
"""
from .classifier import ModelFolderError, SentimentClassifier

__all__ = ["SentimentClassifier", "ModelFolderError"]
