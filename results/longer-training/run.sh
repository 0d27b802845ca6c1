#!/usr/bin/env bash
# Issue 22, seventh round, 2026-12-05, code of commit 1a3fbc7, 2-core AMD EPYC, run alone (662 s); accuracy only. The front's 2 x 192 and the shipped 3 x 192
# recipes trained longer than the search's ASHA bands gave them (2 and 3 epochs), on the search's own teacher and
# 40,000-text transfer set; everything else as in results/transfer-size/run.sh (seed 13).
B3="layers=3,hidden=192,heads=6,ffn=384,vocab=8000,epochs=3,lr=5e-4,kd_alpha=0.7,kd_temperature=2,transfer_ratio=0.5,init=pruned,transfer=real,expert_buckets=131072"
R2="layers=2,vocab=16000,kd_alpha=0.6273606376533014,kd_temperature=2.682263671438508,lr=0.0012470393518237285"
python -m studies.ablation --experiment experiments/rusentiment-banded --data-dir ../shared/data/rusentiment \
  --transfer real:40000 --base "$B3" --rows "2x192-e3:$R2,epochs=3" "2x192-e4:$R2,epochs=4" "3x192-e4:epochs=4" \
  --tag longer
cp experiments/rusentiment-banded/longer{.csv,.json,_parts.csv} results/longer-training/
