#!/usr/bin/env bash
# Issue 22, seventh round, 2026-12-05, 2-core AMD EPYC; accuracy only. An expert that sees more than VK's labelled
# posts: fitted on the gold training posts plus the search's 40,000 transfer texts at the teacher's argmax labels
# ("gold+silver"), against the gold-only expert, each fused with the shipped student's own logits; RuSentiTweet's
# test file is measured, never selected on.
python -m studies.gold_expert --model inference/models/rusentiment-student --data-dir ../shared/data/rusentiment \
  --kinds chars+words --buckets 131072 --models svm --c-values 0.3 1.0 \
  --silver experiments/rusentiment-banded real:40000 --out results/expert-silver
