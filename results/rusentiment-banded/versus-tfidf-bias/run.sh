#!/usr/bin/env bash
# The shipped student and three front members, each exported with the class-prior bias fitted on validation
# (analysis.export's default --class-bias fit), beside the fair TF-IDF and the fp32 teacher in one run on a quiet
# machine. Code of commit ec1d33d; 2-core AMD EPYC (AVX-512 VNNI/BF16), 2026-12-05.
python -m analysis.export --experiment experiments/rusentiment-banded --out inference/models/rusentiment-student \
  --max-size-mib 5 --max-latency-ms 0.739 --without-runtime          # trial 2fc7f5a9, as in the round before
for t in d4bd5994 ef171d09 af0e5998; do
  python -m analysis.export --experiment experiments/rusentiment-banded --out experiments/rusentiment-banded/exported/$t --trial $t
done
E=experiments/rusentiment-banded/exported
python -m studies.versus_tfidf --experiment experiments/rusentiment-banded --rounds 5 \
  --out results/rusentiment-banded/versus-tfidf-bias \
  --models inference/models/rusentiment-student $E/d4bd5994 $E/ef171d09 $E/af0e5998 --data-dir ../shared/data/rusentiment
