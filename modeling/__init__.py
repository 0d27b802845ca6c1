"""Models shared by teachers and students: an encoder classifier, vocabulary trimming, metrics."""
from .classifier import ClassifierConfig, EncoderClassifier
from .metrics import classification_metrics

__all__ = ["ClassifierConfig", "EncoderClassifier", "classification_metrics"]
