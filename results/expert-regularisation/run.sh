#!/usr/bin/env bash
# Issue 22, seventh round, 2026-12-05, 2-core AMD EPYC; accuracy only. The shipped student's own logits fused with
# gold experts of fixed C (stronger regularisation: fewer VK-specific n-gram weights), in domain and out of domain
# (RuSentiTweet's test file, measured only); the shipped expert's C is 1.0, cross-fitted from (0.3, 1, 3).
python -m studies.gold_expert --model inference/models/rusentiment-student --data-dir ../shared/data/rusentiment \
  --kinds chars+words --buckets 131072 --models svm --c-values 0.1 0.3 1.0 --out results/expert-regularisation
