"""Search spaces as code."""
from .student import HEADS_FOR_HIDDEN, StudentConfig, StudentSpace, sample_student

__all__ = ["HEADS_FOR_HIDDEN", "StudentConfig", "StudentSpace", "sample_student"]
