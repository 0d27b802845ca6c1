"""A better teacher for the students to learn from: the teacher fused with the gold expert (issue 22, item 6).

    python -m studies.expert_teacher --from experiments/rusentiment --to experiments/rusentiment-fused \\
        --data-dir ../shared/data/rusentiment --transfer real:40000

Makes a new experiment (hard links to the source's ``teacher/`` files, which stay untouched) whose
distillation targets are the teacher's log-probabilities fused with the gold-label lexical expert's,
``(1 - w) * log_softmax(teacher) + w * expert`` (``inference.expert.fuse``), with ``w`` chosen on
validation (minimum fused cross-entropy, ``modeling.expert.choose_weight``). The expert is the one the
search fits (gold labels of the training posts, ``modeling.expert.fit_expert``); on the training posts
its log-probabilities are cross-fitted (out of fold, the folds and C of the fit), so a post's target
never comes from an expert that saw its label. Transfer texts get the full expert. Training a student on
both experiments with the same seed and epochs compares the two teachers at equal student compute
(``python -m studies.ablation --experiment ...``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

log = logging.getLogger("studies.expert_teacher")


def cross_fitted_log_probs(expert, record: dict, texts: list[str], labels: np.ndarray, seed: int) -> np.ndarray:
    """Out-of-fold calibrated log-probabilities of the training posts (the C and folds the fit chose)."""
    from inference.expert import log_softmax
    from modeling.expert import count_matrix, oof_scores, tfidf

    x = tfidf(count_matrix(texts, expert.spec), expert.idf.astype(np.float32))
    oof = oof_scores(x, labels, record["model"], float(record["C"]), int(record["folds"]), seed)
    return log_softmax(oof @ expert.calib + expert.calib_bias).astype(np.float32)


def install(source: Path, target: Path, data_dir: str | None, transfer: list[str], buckets: int,
            model: str = "svm", seed: int = 13) -> dict:
    from corpus import splits_from_record
    from inference.atomic import atomic_file, write_json
    from inference.expert import fuse
    from modeling import classification_metrics
    from modeling.expert import ExpertConfig, choose_weight, fit_expert
    from search.experiment import Experiment
    from search.transfer_stage import load_transfer, parse_transfer, write_transfer_set

    if target.exists():
        raise FileExistsError(f"{target} exists; choose a new --to directory")
    data = Experiment(source).record("data")
    splits = splits_from_record(data, data_dir)
    specs = [parse_transfer(t, seed, len(splits.train)) for t in transfer]
    for spec in specs:  # every named set must exist before anything is written
        load_transfer(source, spec)
    src = Experiment(source)
    logits = {s: np.load(src.logits(s)) for s in ("train", "val", "test") if src.logits(s).is_file()}
    y = {"train": splits.train.label.to_numpy(), "val": splits.val.label.to_numpy()}
    if splits.has_test:
        y["test"] = splits.test.label.to_numpy()
    texts = {"train": splits.train.text.tolist(), "val": splits.val.text.tolist()}
    if splits.has_test:
        texts["test"] = splits.test.text.tolist()

    expert, record = fit_expert(texts["train"], y["train"], ExpertConfig(buckets=buckets, model=model, seed=seed))
    expert_lp = {"train": cross_fitted_log_probs(expert, record, texts["train"], y["train"], seed),
                 **{s: expert.log_probs(texts[s]) for s in texts if s != "train"}}
    weight, by_weight = choose_weight(logits["val"], expert_lp["val"], y["val"], rule="nll")
    log.info("teacher + gold expert: fusion weight %.2f chosen on validation (minimum cross-entropy)", weight)

    new = src.derive(target)  # hard links; every target file below is replaced by an atomic rename, never rewritten
    summary = {"weight": weight, "rule": "nll on validation", "expert": record, "source": source.name,
               "train_targets": "teacher fused with the cross-fitted (out-of-fold) expert"}
    for split in logits:
        fused = fuse(logits[split], expert_lp[split], weight).astype(np.float32)
        with atomic_file(new.logits(split)) as tmp:
            np.save(tmp, fused)
        summary[split] = {
            "teacher": {k: round(float(v), 4) for k, v in classification_metrics(y[split], logits[split].argmax(1)).items()},
            "expert": {k: round(float(v), 4) for k, v in classification_metrics(y[split], expert_lp[split].argmax(1)).items()},
            "fused": {k: round(float(v), 4) for k, v in classification_metrics(y[split], fused.argmax(1)).items()}}
        log.info("%s wF1: teacher %.4f, expert %.4f, fused %.4f", split, summary[split]["teacher"]["weighted_f1"],
                 summary[split]["expert"]["weighted_f1"], summary[split]["fused"]["weighted_f1"])
    info = src.record("teacher_record")
    info["soft_labels"] = {"tag": "teacher+gold-expert", **summary}
    write_json(new.teacher_record, info)
    for spec in specs:
        set_texts, set_logits, pooled = load_transfer(source, spec)
        fused = fuse(set_logits, expert.log_probs(set_texts), weight).astype(np.float32)
        meta = json.loads(Experiment(source).transfer_file(spec.name, ".json").read_text())
        agree = float((fused.argmax(1) == set_logits.argmax(1)).mean())
        write_transfer_set(Experiment(target).transfer, spec, set_texts, fused, splits.labels, source=meta.get("source"),
                           labelling_s=meta.get("labelling_s"), pooled=pooled,
                           labelled_by=f"the teacher fused with the gold expert (weight {weight:.2f})",
                           held_out=meta.get("fidelity_held_out"))
        summary.setdefault("transfer", {})[spec.name] = {"texts": len(set_texts), "argmax_agrees_with_teacher": round(agree, 4)}
        log.info("transfer set %s: %d texts relabelled; argmax agrees with the teacher on %.1f %%",
                 spec.name, len(set_texts), 100 * agree)
    summary["by_weight_val"] = {str(k): {m: round(v, 4) for m, v in r.items()} for k, r in by_weight.items()}
    write_json(target / "expert_teacher.json", summary)
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.expert_teacher", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--from", dest="source", type=Path, required=True, help="experiment with a teacher and transfer sets")
    p.add_argument("--to", dest="target", type=Path, required=True, help="new experiment directory")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--transfer", nargs="*", default=["real:40000"], help="transfer sets to relabel (built in --from)")
    p.add_argument("--expert-buckets", type=int, default=131072)
    p.add_argument("--expert-model", choices=("svm", "logreg", "nbsvm"), default="svm")
    p.add_argument("--seed", type=int, default=13)
    a = p.parse_args(argv)
    from search.cli import run_cli

    return run_cli(lambda: install(a.source.resolve(), a.target.resolve(), a.data_dir, a.transfer, a.expert_buckets,
                                   a.expert_model, a.seed),
                   (FileExistsError, FileNotFoundError, ValueError, KeyError), log)


if __name__ == "__main__":
    sys.exit(main())
