#!/usr/bin/env bash
# Issue 22, sixth round, 2026-12-05, code of commit d0d843e, 2-core AMD EPYC (AVX-512 VNNI/BF16); accuracy only
# (it shared the cores with other jobs, so its fit times are not timings). The shipped student's own logits fused
# with gold experts on other char n-gram ranges and bucket counts (LinearSVC, weight chosen on validation):
python -m studies.gold_expert --model inference/models/rusentiment-student --data-dir ../shared/data/rusentiment \
  --buckets 131072 262144 --models svm --kinds chars+words --char-ranges 2-5 1-5 2-6 3-6 --out results/expert-variants
