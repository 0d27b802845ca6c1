#!/usr/bin/env bash
# Issue 22: a per-class bias fitted on validation (prior calibration) on the 13 front members of
# results/rusentiment-banded that carry the gold expert. Code of commit e01c9a3 + studies/class_bias.py on modeling/calibration.py; 2-core AMD
# EPYC (AVX-512 VNNI/BF16), 2026-12-05, 166 s (beside a mutation-testing run: accuracy only, no timing here).
M=experiments/rusentiment-banded/students
python -m studies.class_bias --models $M/7b133b30 $M/ddd535d1 $M/af0e5998 $M/d1c5fe04 $M/4515fadb $M/6d4fe83a \
  $M/ef171d09 $M/b352cfb9 $M/1b5de97a $M/2c97c1c0 $M/7c03ae58 $M/2fc7f5a9 $M/d4bd5994 \
  --data-dir ../shared/data/rusentiment --out results/class-bias
