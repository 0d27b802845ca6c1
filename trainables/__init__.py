"""Ray Tune trainables: teacher fine-tuning (``teacher.py``) and student distillation -> int8 PTQ -> CPU
benchmark (``student.py``), with the loops they share (``loop.py``)."""
