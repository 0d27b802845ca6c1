#!/usr/bin/env bash
# Issue 22, 2026-12-05, code of commit 72855ac, 2-core AMD EPYC (AVX-512 VNNI/BF16), one command at a time.
# 1. Where the shipped student's call goes, each part timed alone (latency_split.json):
python -m studies.latency_split --model inference/models/rusentiment-student --data-dir ../shared/data/rusentiment \
  --out /tmp/ls-shipped && cp /tmp/ls-shipped/*.json results/expert-cost/latency_split.json
# 2. The same parts inside the call (in_context.txt):
python results/expert-cost/in_context.py > results/expert-cost/in_context.txt
# 3. An expert on the student's own subword ids (computable inside the ONNX graph) against char + word n-grams,
#    fused with the shipped student (subwords_vs_chars.json):
python -m studies.gold_expert --model inference/models/rusentiment-student --data-dir ../shared/data/rusentiment \
  --buckets 131072 --models svm --kinds chars+words subwords --out /tmp/ge-sub && \
  cp /tmp/ge-sub/results.json results/expert-cost/subwords_vs_chars.json
# Sixth round (2026-12-05, commit 53d2d0e, same machine, quiet, one command at a time):
# 4. The expert's hashing, tf-idf and table as ONNX nodes inside each student's graph, against the numpy expert
#    (in_graph.txt; the folders: the shipped student and two exported front members of results/rusentiment-banded):
python -m studies.expert_in_graph inference/models/rusentiment-student experiments/rusentiment-banded/exported/ef171d09 \
  experiments/rusentiment-banded/exported/af0e5998 > results/expert-cost/in_graph.txt
# 5. ONNX Runtime session settings for the batch-1 call (session_options.txt):
python results/expert-cost/session_options.py > results/expert-cost/session_options.txt
