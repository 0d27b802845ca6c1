"""Train chosen students outside Ray — longer runs, or on a machine without Ray (a lent GPU) — with
the search's own trainable (``trainables.student.fit_student``: the same KD, PTQ and checkpoints).

Three steps, so that the training machine needs only torch, transformers, tokenizers, onnxruntime,
pandas and scikit-learn (no Ray, no datasets) and a bundle of a few tens of MiB:

    python -m studies.train_students pack --experiment EXP --out BUNDLE --layers 4 --transfer real-40000-s13
    python -m studies.train_students run --bundle BUNDLE --out RUNS --base FIELD=VALUE,... --rows NAME:FIELD=VALUE,...
    python -m studies.train_students collect --experiment EXP --runs RUNS --tag TAG [--data-dir DIR]

``pack`` keeps the teacher's bottom ``--layers`` layers (all a pruned student of that depth or less
is cut from) in float16, the split's texts, the teacher's logits, its activation statistics and
the named transfer sets, in the experiment folder's own layout (``search/experiment.py``), so that ``run``
reads it with the search's reader (``search/student_stage.py:make_data``, gold experts included). ``run`` trains each row (fields of ``spaces.student.StudentConfig`` over
``--base``; ``device=auto`` uses a GPU when there is one) and packs each final checkpoint into
``RUNS/NAME.tar`` (int8 folder + float16 copy of the fp32 student). ``collect`` unpacks them into
the experiment as ``<tag>.csv`` with test and out-of-domain figures, re-benchmarked on this
machine, so that ``python -m analysis --table TAG`` and ``python -m analysis.export --table TAG``
take them like any trial. Selection stays on validation.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spaces.student import StudentConfig

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("studies.train_students")


def pack(experiment: Path, out: Path, layers: int, transfer: list[str], data_dir: str | None) -> Path:
    import numpy as np
    import pandas as pd

    from corpus import splits_from_record
    from inference.atomic import atomic_directory, write_json
    from modeling import EncoderClassifier
    from search.experiment import Experiment

    layout = Experiment(experiment)
    data = layout.record("data")
    splits = splits_from_record(data, data_dir)
    teacher, tok = EncoderClassifier.load(layout.teacher_model)
    teacher.encoder.encoder.layer = teacher.encoder.encoder.layer[:layers]  # only the bottom layers are ever cut
    teacher.encoder.config.num_hidden_layers = layers
    teacher.half()
    with atomic_directory(out) as tmp:
        packed = Experiment(tmp)  # the experiment's own layout, with only what students read
        teacher.save(packed.teacher_model, tok)
        if layout.teacher_output("importance.npz").is_file():  # needed by "pruned" students only
            shutil.copy(layout.teacher_output("importance.npz"), packed.teacher_output("importance.npz"))
        pd.concat([splits.train.assign(split="train"), splits.val.assign(split="val")])[["text", "label", "split"]] \
            .to_parquet(tmp / "splits.parquet", index=False)
        np.save(packed.logits("train"), np.load(layout.logits("train")))
        packed.transfer.mkdir(parents=True)
        for name in transfer:
            shutil.copy(layout.transfer_file(name), packed.transfer_file(name))
        write_json(tmp / "bundle.json", {"experiment": experiment.name, "teacher_layers": layers,
                                         "transfer": list(transfer), "data": data})
    log.info("bundle %s: %.1f MiB", out, sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20)
    return out


def load_bundle(bundle: Path, rows: list[StudentConfig]):
    """(StudentData, bundle.json) for training ``rows``: the search's own reader (``make_data``) over the bundle,
    with the lexical features and gold experts the rows ask for."""
    import pandas as pd

    from corpus.augment import TransferSpec
    from corpus.splits import Splits
    from search.student_stage import StudentStageConfig, make_data
    from spaces.student import StudentSpace

    info = json.loads((bundle / "bundle.json").read_text())
    df = pd.read_parquet(bundle / "splits.parquet")
    train, val = (df[df.split == s].drop(columns="split").reset_index(drop=True) for s in ("train", "val"))
    splits = Splits(train=train, val=val, test=val.iloc[:0], seed=info["data"]["seed"],
                    labels=tuple(info["data"]["labels"]))
    transfer = []
    for name in info["transfer"]:  # RECIPE-SIZE-sSEED, TransferSpec.name
        recipe, size, seed = name.split("-")
        transfer.append(TransferSpec(recipe, int(size), int(seed[1:])))
    space = StudentSpace(init=tuple(sorted({r.init for r in rows})),
                         lexical_buckets=tuple(sorted({r.lexical_buckets for r in rows})),
                         expert_buckets=tuple(sorted({r.expert_buckets for r in rows})),
                         fused_weight=tuple(sorted({r.fused_weight for r in rows})))
    seeds = {r.seed for r in rows}
    cfg = StudentStageConfig(space=space, transfer=tuple(transfer), seed=min(seeds))
    return make_data(splits, bundle, cfg), info


def run(bundle: Path, out: Path, base: str, rows: list[str], threads: int) -> None:
    import torch

    from studies.ablation import parse_overrides, parse_rows
    from spaces.student import StudentConfig
    from trainables.student import FolderReporter, fit_student

    configs = {name: StudentConfig(**{"threads": threads, "device": "auto", "evals_per_epoch": 1,
                                      **parse_overrides(base, "--base"), **over})
               for name, over in parse_rows(tuple(rows)).items()}
    data, info = load_bundle(bundle, list(configs.values()))
    for name, cfg in configs.items():
        if cfg.init == "pruned" and cfg.layers > info["teacher_layers"]:
            raise ValueError(f"--rows {name}: layers={cfg.layers} but the bundle keeps {info['teacher_layers']}")
        log.info("%s: %s", name, cfg)
        fit_student(cfg, data, FolderReporter(out / name))
        ckpt = out / name / "checkpoint"
        half = ckpt / "torch" / "encoder" / "model.safetensors"  # float16 copy: the tar stays small
        from safetensors.torch import load_file, save_file

        save_file({k: v.half() for k, v in load_file(str(half)).items()}, str(half))
        (ckpt / "train_state.pt").unlink(missing_ok=True)
        (ckpt / "config.json").write_text(json.dumps({"name": name, "student": vars(cfg)}, default=str))
        shutil.copy(out / name / "metrics.jsonl", ckpt / "metrics.jsonl")
        with tarfile.open(out / f"{name}.tar", "w") as tar:
            tar.add(ckpt, arcname=name)
        torch.cuda.empty_cache() if torch.cuda.is_available() else None


def collect(experiment: Path, runs: Path, tag: str, data_dir: str | None, ood_test: str | None) -> Path:
    import pandas as pd
    from safetensors.torch import load_file, save_file

    from corpus import splits_from_record
    from corpus.rusentiment import ood_test_for
    from inference.atomic import write_json
    from inference.benchmark import benchmark
    from search.experiment import Experiment
    from search.student_stage import evaluate_on_test, trial_row, write_csv_atomic
    from trainables.metrics import TRIAL_METRICS

    ex = Experiment(experiment)
    splits = splits_from_record(ex.record("data"), data_dir)
    ood = ood_test_for(splits, ood_test)  # RuSentiment's OOD only
    extra = {"ood": ood} if ood is not None else {}
    rows = []
    for tar_path in sorted(runs.glob("*.tar")):
        with tempfile.TemporaryDirectory() as d, tarfile.open(tar_path) as tar:
            tar.extractall(d, filter="data")
            (src,) = Path(d).iterdir()
            meta = json.loads((src / "config.json").read_text())
            metrics = [json.loads(line) for line in (src / "metrics.jsonl").read_text().splitlines()][-1]
            trial_id = f"{tag}_{meta['name']}"
            model_dir = ex.models(f"{tag}_students") / trial_id
            fp32_dir = ex.models(f"{tag}_students_fp32") / trial_id
            for dest, part in ((model_dir, "model"), (fp32_dir, "torch")):
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(src / part, dest)
            weights = fp32_dir / "encoder" / "model.safetensors"
            save_file({k: v.float() for k, v in load_file(str(weights)).items()}, str(weights))
        bench = benchmark(model_dir, splits.val.text.tolist())  # on this machine, not the training one
        measured = {**metrics, **bench}
        rows.append(trial_row(trial_id, meta["student"], measured, "completed", extra={
            "row": meta["name"], **{k: v for k, v in measured.items() if k not in TRIAL_METRICS},
            "trained_on": metrics.get("device"), "model_dir": str(model_dir.relative_to(experiment))}))
    if not rows:
        raise FileNotFoundError(f"{runs}: no NAME.tar from `run`")
    df = evaluate_on_test(pd.DataFrame(rows), splits, experiment, extra)
    write_csv_atomic(df, ex.table(tag))
    write_json(ex.study_record(tag), {"runs": str(runs), "rows": df.to_dict(orient="records")})
    return ex.table(tag)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.train_students", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    a = sub.add_parser("pack")
    a.add_argument("--experiment", type=Path, required=True)
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--layers", type=int, required=True, help="teacher layers to keep (the deepest student's depth)")
    a.add_argument("--transfer", nargs="*", default=[], help="transfer sets by file name, e.g. real-40000-s13")
    a.add_argument("--data-dir", default=None)
    b = sub.add_parser("run")
    b.add_argument("--bundle", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--base", default="", help="FIELD=VALUE,... over StudentConfig for every row")
    b.add_argument("--rows", nargs="+", required=True, help="NAME:FIELD=VALUE,... one per student")
    b.add_argument("--threads", type=int, default=4, help="CPU threads (int8 evaluation, CPU training)")
    c = sub.add_parser("collect")
    c.add_argument("--experiment", type=Path, required=True)
    c.add_argument("--runs", type=Path, required=True)
    c.add_argument("--tag", required=True)
    c.add_argument("--data-dir", default=None)
    c.add_argument("--ood-test", default=None)
    args = p.parse_args(argv)
    from search.cli import run_cli

    def work() -> None:
        if args.step == "pack":
            pack(args.experiment.resolve(), args.out, args.layers, args.transfer, args.data_dir)
        elif args.step == "run":
            run(args.bundle, args.out, args.base, args.rows, args.threads)
        else:
            print(collect(args.experiment.resolve(), args.runs, args.tag, args.data_dir, args.ood_test))

    return run_cli(work, (FileNotFoundError, ValueError), log)


if __name__ == "__main__":
    sys.exit(main())
