"""Install soft labels from ``studies/teacher_recipes.py`` (a teacher ensemble) into a new experiment.

The new experiment starts as a copy (hard links) of an existing one's ``teacher/`` folder — its
encoder base and single fine-tuned teacher stay, for student initialisation and the report — and
its distillation targets are replaced: ``teacher/logits_{train,val,test}.npy`` and every transfer
set in the npz become the ensemble's averaged logits. Transfer texts are regenerated from the
training posts (deterministic per recipe and seed) and checked against the hashes the labelling
run recorded, so logits and texts cannot drift apart::

    python -m studies.soft_labels --from experiments/rusentiment --to experiments/rusentiment-ens \\
        --npz teacher_logits.npz --recipes results/rusentiment/teacher_recipes/run1.json \\
        --data-dir ../shared/data/rusentiment
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

log = logging.getLogger("studies.soft_labels")


def install(source: Path, target: Path, npz: Path, recipes: dict, data_dir: str | None, tag: str = "ensemble") -> dict:
    from corpus import load_splits
    from corpus.augment import TransferSpec, generate
    from corpus.encode import text_hash
    from search.experiment import Experiment
    from search.transfer_stage import write_transfer_set
    from modeling import classification_metrics

    if target.exists():
        raise FileExistsError(f"{target} exists; choose a new --to directory")
    splits = load_splits(data_dir)
    if text_hash(splits.val.text) != recipes["val_text_sha"]:
        raise ValueError(f"{npz}: the logits were computed on another validation split "
                         f"({recipes['val_text_sha']} != {text_hash(splits.val.text)}); same data and seed needed")
    z = np.load(npz)
    new = Experiment(source).derive(target, teacher_parts=("base", "model"))
    info = Experiment(source).record("teacher_record")
    labels = {"train": splits.train.label.to_numpy(), "val": splits.val.label.to_numpy(),
              "test": splits.test.label.to_numpy()}
    soft = {"source": str(npz), "tag": tag, "members": recipes["chosen_ensemble"] if tag == "ensemble" else None,
            "device": recipes.get("device_name"), "single_teacher_model": "teacher/model (unchanged)"}
    for split, y in labels.items():
        logits = z[f"{tag}/{split}"].astype(np.float32)
        np.save(new.logits(split), logits)
        soft[split] = {k: round(float(v), 4) for k, v in classification_metrics(y, logits.argmax(1)).items()}
    info["soft_labels"] = soft
    new.teacher_record.write_text(json.dumps(info, indent=2, ensure_ascii=False, default=str))
    out = new.transfer
    out.mkdir()
    train_texts = splits.train.text.tolist()
    for key in z.files:
        if not key.startswith(f"{tag}/transfer/"):
            continue
        name = key.rsplit("/", 1)[1]
        recipe, size, seed = name.split("-")
        spec = TransferSpec(recipe, int(size), int(seed[1:]))
        texts = generate(train_texts, spec)
        if text_hash(texts) != recipes["transfer_text_sha"][name]:
            raise ValueError(f"{name}: regenerated texts differ from the labelled ones; was corpus/augment.py changed?")
        write_transfer_set(out, spec, texts, z[key].astype(np.float32), splits.labels, source="training posts only",
                           labelling_s=None,  # the recipes run timed the sets together, not this one
                           labelled_by=f"{tag} of studies/teacher_recipes.py on {recipes.get('device_name')} "
                                       f"(all transfer sets together: {recipes.get('transfer_labelling_s')} s)")
        log.info("transfer set %s: %d posts with %s logits", name, len(texts), tag)
    log.info("installed %s soft labels in %s: val wF1 %.4f, test wF1 %.4f", tag, target,
             soft["val"]["weighted_f1"], soft["test"]["weighted_f1"])
    return soft


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.soft_labels", description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", type=Path, required=True, help="experiment with a trained teacher")
    p.add_argument("--to", dest="target", type=Path, required=True, help="new experiment directory")
    p.add_argument("--npz", type=Path, required=True, help="teacher_logits.npz from studies/teacher_recipes.py")
    p.add_argument("--recipes", type=Path, required=True, help="the recipes.json written beside it")
    p.add_argument("--tag", choices=("ensemble", "single"), default="ensemble")
    p.add_argument("--data-dir", default=None)
    a = p.parse_args(argv)
    from search.cli import run_cli

    return run_cli(lambda: install(a.source, a.target, a.npz, json.loads(a.recipes.read_text()), a.data_dir,
                                   a.tag),
                   (FileExistsError, FileNotFoundError, ValueError, KeyError), log)


if __name__ == "__main__":
    sys.exit(main())
