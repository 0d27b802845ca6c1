"""Ray Tune trainables: teacher fine-tuning (and, next, student distillation)."""
