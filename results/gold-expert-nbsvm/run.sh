#!/usr/bin/env bash
# The gold expert's linear model (issue 22): LinearSVC vs NBSVM on hashed char 2-5 + word 1-2 n-grams (131,072
# buckets), alone and fused with the shipped student's own logits. Code of commit fc8adb8; 2-core AMD EPYC
# (AVX-512 VNNI/BF16), 2026-12-04, 3 min.
python -m studies.gold_expert --model inference/models/rusentiment-student --data-dir ../shared/data/rusentiment \
  --buckets 131072 --models svm nbsvm --kinds chars+words --out results/gold-expert-nbsvm
