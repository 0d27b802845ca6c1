#!/usr/bin/env bash
# Fused attention in the export (issue 22, item 3): three students of the fresh-clone run's experiment
# (results/fresh-clone-run/) re-exported by the current export path (attention written eager, so ONNX Runtime
# fuses it into Attention/EmbedLayerNormalization and the int8 pass quantizes those), measured by the search's
# own routine (studies.quantization: val/test F1, size, latency), then timed beside their folders as the search
# exported them, the fair TF-IDF and the fp32 teacher in one run (studies.versus_tfidf). From the repository
# root, with experiments/rusentiment the fresh-clone run's experiment; nothing else running.
set -euo pipefail
EXP=experiments/rusentiment
OUT=results/fused-attention
NEW=$EXP/fused-attention
rm -rf $NEW && mkdir -p $NEW
for t in trials:dd3c6ad4 trials:0d0658d7 fused:5eb89_00002; do
  python -m studies.quantization --experiment $EXP --table ${t%%:*} --trial ${t#*:} --forms int8 --tag fa-${t#*:} \
    --keep $NEW/scratch
  mv $NEW/scratch/int8 $NEW/${t#*:}-fused-attention
done
cp $EXP/fa-*.csv $OUT/
python -m studies.versus_tfidf --experiment $EXP --rounds 5 --out $OUT \
  --models $EXP/students/dd3c6ad4 $NEW/dd3c6ad4-fused-attention $EXP/students/0d0658d7 $NEW/0d0658d7-fused-attention \
           $EXP/fused_students/5eb89_00002 $NEW/5eb89_00002-fused-attention
lscpu > $OUT/lscpu.txt
