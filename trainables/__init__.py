"""Ray Tune trainables: teacher fine-tuning (``teacher.py``) and student distillation -> int8 PTQ -> CPU
benchmark (``student.py``), with what they share: the loops (``loop.py``), where and in what precision they run
(``device.py``), what a Ray worker needs (``worker.py``)."""
