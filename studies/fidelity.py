"""Fidelity of model folders to an experiment's teacher: ``python -m studies.fidelity``.

For each exported folder (a trial's, the shipped student, an export), its answers on the experiment's held-out
unlabelled slice (``corpus.fidelity``, labelled by the teacher in the prepare stage) are compared with the
teacher's: argmax agreement and KL per source and overall (``modeling.metrics.fidelity``). With ``--parts`` the
same folder is also read as its parts: the student alone (no expert, no class bias), fused at one weight for
every text (no gate), and as shipped. Writes ``<experiment>/<tag>.csv`` (one row per folder and part) and
``<tag>.json``; nothing here trains or selects.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.cli import add_options, from_args, option, run_cli  # noqa: E402

log = logging.getLogger("studies.fidelity")


@dataclass
class FidelityConfig:
    """fidelity of model folders to the experiment's teacher"""
    experiment: str = option(help="experiment directory whose teacher labelled the fidelity slice")
    models: tuple[str, ...] = option(help="exported model folders", nargs="+")
    parts: bool = option(False, "also the student alone and the fusion at one weight (no gate)")
    threads: int = option(2, "ONNX Runtime threads")
    tag: str = option("fidelity", "names the outputs inside the experiment: <tag>.csv, <tag>.json")
    gate_out: str | None = option(None, "fit the expert's text-dependent weight (modeling.expert.choose_gate, on the "
                                  "experiment's teacher-labelled real-text transfer sets) for the first of --models, "
                                  "write the gated copy here, and measure it as another folder")
    data_dir: str | None = option(None, "the RuSentiment folder (else the one data.json records)")


def folder_parts(folder: Path, slice_, threads: int, parts: bool) -> list[dict]:
    """The folder's fidelity as shipped and, with ``parts``, of its parts (rows: folder, part, figures)."""
    from inference import SentimentClassifier
    from modeling.metrics import fidelity

    clf = SentimentClassifier.load(folder, threads=threads)
    rows = [("as shipped", clf.logits(slice_.texts, 64))]
    if parts:
        rows.append(("student alone", clf.student_logits(slice_.texts, 64)))
        if clf.gate is not None and clf.fused:
            clf.gate = None
            rows.append(("fused, one weight, no gate", clf.logits(slice_.texts, 64)))
    return [{"folder": folder.name, "part": part, **fidelity(scores, slice_.teacher_logits, slice_.sources)}
            for part, scores in rows]


def gated_copy(experiment: Path, folder: Path, out: Path, data_dir: str | None) -> dict:
    """A copy of ``folder`` with the gate fitted as a trial fits it (``trainables.student.fit_gate``: knee from the
    validation posts, slope from the teacher's answers on the experiment's real-text transfer sets), written to
    ``out``; returns the gate and the slope table."""
    import json
    import shutil

    import numpy as np

    from corpus import splits_from_record
    from corpus.augment import REAL, TransferSpec
    from inference import SentimentClassifier
    from modeling.expert import choose_gate, set_weight
    from search.experiment import Experiment
    from search.student_stage import gate_texts
    from search.transfer_stage import load_transfer

    layout = Experiment(experiment)
    splits = splits_from_record(layout.record("data"), data_dir)
    transfer = {}
    for meta_file in sorted(layout.transfer.glob("*.json")):
        meta = json.loads(meta_file.read_text())
        if meta.get("recipe") in REAL:
            transfer.setdefault(meta["recipe"], load_transfer(experiment, TransferSpec(meta["recipe"], meta["size"],
                                                                                      meta["seed"])))
    picked = gate_texts(transfer, int(layout.record("data").get("seed", 13)))
    if picked is None:
        raise FileNotFoundError(f"{layout.transfer}: no real-text transfer set to fit the gate on")
    clf = SentimentClassifier.load(folder, threads=2)
    if not clf.fused:
        raise ValueError(f"{folder}: no gold expert at a weight above 0: nothing to gate")
    texts, teacher = picked
    rarity, val_rarity = np.empty(len(texts), np.float32), np.empty(len(splits.val), np.float32)
    clf.expert_log_probs(splits.val.text.tolist(), val_rarity)
    expert = clf.expert_log_probs(texts, rarity)
    g, table = choose_gate(clf.student_logits(texts, 64), expert, rarity, clf.expert_weight, teacher, val_rarity)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(folder, out)
    set_weight(out, clf.expert_weight, gate=g)
    log.info("gate for %s: knee %.3f slope %.2f -> %s", folder.name, g.knee, g.slope, out)
    return {"knee": g.knee, "slope": g.slope, "texts": len(texts), "slopes": table}


def run(cfg: FidelityConfig) -> dict:
    import pandas as pd

    from inference.atomic import write_json
    from search.experiment import Experiment
    from search.student_stage import write_csv_atomic
    from search.transfer_stage import load_fidelity

    experiment = Path(cfg.experiment).resolve()
    slice_ = load_fidelity(experiment)
    if slice_ is None:
        raise FileNotFoundError(f"{experiment}: no fidelity slice (teacher/fidelity.parquet); run search/run.py "
                                f"--stage prepare with an unlabelled pool (--transfer-texts, --broad-texts)")
    models = [Path(m) for m in cfg.models]
    gate = None
    if cfg.gate_out:
        gate = gated_copy(experiment, models[0], Path(cfg.gate_out), cfg.data_dir)
        models.append(Path(cfg.gate_out))
    rows = [r for m in models for r in folder_parts(m, slice_, cfg.threads, cfg.parts)]
    df = pd.DataFrame(rows)
    layout = Experiment(experiment)
    write_csv_atomic(df, layout.table(cfg.tag))
    out = {"study": "fidelity", "config": {**asdict(cfg), "experiment": experiment.name,
                                          "models": [Path(m).name for m in cfg.models]},
           "texts": len(slice_.texts), "sources": slice_.names, "gate": gate, "rows": rows}
    write_json(layout.study_record(cfg.tag), out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.fidelity", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_options(p, FidelityConfig)
    cfg = from_args(FidelityConfig, p.parse_args(argv))

    def show(out):
        import pandas as pd

        print(pd.DataFrame(out["rows"]).set_index(["folder", "part"]).T.to_string(float_format=lambda x: f"{x:.3f}"))

    return run_cli(lambda: show(run(cfg)), (FileNotFoundError, ValueError), log)


if __name__ == "__main__":
    sys.exit(main())
