#!/usr/bin/env bash
# Issue 22, sixth round, 2026-12-05, code of commit c30bd85, 2-core AMD EPYC; accuracy only (shared cores).
# All 90,000 transfer texts against the search's 40,000, on the shipped 3 x 192 recipe and ef171d09's 2 x 192.
B3="layers=3,hidden=192,heads=6,ffn=384,vocab=8000,epochs=3,lr=5e-4,kd_alpha=0.7,kd_temperature=2,transfer_ratio=0.5,init=pruned,transfer=real,expert_buckets=131072"
R2="2x192:layers=2,vocab=16000,kd_alpha=0.6273606376533014,kd_temperature=2.682263671438508,lr=0.0012470393518237285,epochs=2"
python -m studies.ablation --experiment experiments/rusentiment-banded --data-dir ../shared/data/rusentiment \
  --transfer real:40000 --base "$B3" --rows "3x192:seed=13" "$R2" --tag transfer40
python -m studies.ablation --experiment experiments/rusentiment-banded --data-dir ../shared/data/rusentiment \
  --transfer real:90000 --base "$B3" --rows "3x192:seed=13" "3x192-r1:transfer_ratio=1.0" "$R2" \
  "2x192-r1:${R2#2x192:},transfer_ratio=1.0" --tag transfer90
cp experiments/rusentiment-banded/transfer{40,90}{.csv,.json,_parts.csv} results/transfer-size/
