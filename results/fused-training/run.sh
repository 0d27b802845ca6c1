#!/usr/bin/env bash
# The fused-training ablation (issue 22): two 1-layer students with the gold expert, each trained alone (fused after
# training) and inside the fusion (fused_weight=0.5), two seeds; on the fresh-clone run's experiment
# (results/fresh-clone-run/), from the repository root. Code of commit fc8adb8; 2-core AMD EPYC (AVX-512 VNNI/BF16), 2026-12-04, 14 min.
EXP=experiments/rusentiment
BASE="layers=1,hidden=192,heads=6,ffn=384,vocab=4000,kd_alpha=0.6,kd_temperature=3,lr=7e-4,epochs=2,init=pruned,transfer=real,transfer_ratio=0.5,expert_buckets=131072"
W128="hidden=128,heads=4,ffn=256,vocab=16000,lr=1.8e-3,kd_alpha=0.67"
rows=()
for seed in 13 14; do
  rows+=("1x192-s$seed:fused_weight=0,seed=$seed" "1x192-fused-s$seed:fused_weight=0.5,seed=$seed"
         "1x128-s$seed:$W128,seed=$seed" "1x128-fused-s$seed:$W128,fused_weight=0.5,seed=$seed")
done
python -m studies.ablation --experiment $EXP --data-dir ../shared/data/rusentiment --base "$BASE" \
  --rows "${rows[@]}" --transfer real:40000 --tag fused --seed 13
