"""The experiment folder (``<storage>/<name>/``): where each file lives, one place for the layout.

``Experiment(path)`` names every file the stages, the analysis and the studies write or read
(docs/architecture.md, section 3, says which writes and which reads each); ``open`` creates or reopens one and
refuses a folder of another layout version; ``record`` reads its JSON records.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from inference.atomic import write_json

FORMAT, VERSION = "rusentiment-kd/experiment", 1


@dataclass(frozen=True)
class Experiment:
    root: Path

    # what the run was given and did
    @property
    def marker(self) -> Path:  # experiment.json: the layout's format and version
        return self.root / "experiment.json"

    @property
    def data(self) -> Path:  # data.json: the splits (checksums, seed), to load them again
        return self.root / "data.json"

    @property
    def run(self) -> Path:  # run.json: provenance and each stage's wall time
        return self.root / "run.json"

    # the teacher and its cached outputs
    @property
    def teacher(self) -> Path:
        return self.root / "teacher"

    @property
    def teacher_model(self) -> Path:  # the fine-tuned classifier (modeling.EncoderClassifier.save)
        return self.teacher / "model"

    @property
    def teacher_base(self) -> Path:  # the vocabulary-trimmed pretrained encoder it was fine-tuned from
        return self.teacher / "base"

    @property
    def teacher_record(self) -> Path:  # teacher.json, written last: it marks the teacher complete
        return self.teacher / "teacher.json"

    def logits(self, split: str) -> Path:
        return self.teacher / f"logits_{split}.npy"

    def teacher_output(self, name: str) -> Path:  # pooled_train.npy, layers_train.npy, importance.npz
        return self.teacher / name

    @property
    def transfer(self) -> Path:  # the teacher-labelled transfer sets: <set>.parquet, .pooled.npy, .json
        return self.teacher / "transfer"

    def transfer_file(self, name: str, suffix: str = ".parquet") -> Path:  # one set's .parquet, .pooled.npy or .json
        return self.transfer / f"{name}{suffix}"

    def fidelity(self, suffix: str = ".parquet") -> Path:  # the fidelity slice, teacher-labelled: .parquet and .json
        return self.teacher / f"fidelity{suffix}"

    # the student search
    def table(self, name: str = "trials") -> Path:  # trials.csv, or a study's <tag>.csv
        return self.root / f"{name}.csv"

    def study_record(self, tag: str) -> Path:  # a study's <tag>.json, beside its <tag>.csv
        return self.root / f"{tag}.json"

    def study_tags(self, study: str, key: str) -> list[str]:
        """Tags of the tables a study wrote here, sorted: its records say ``"study": study`` (records older than that
        field are recognised by ``key``, a field only that study writes)."""
        tags = []
        for path in sorted(self.root.glob("*.json")):
            if not self.table(path.stem).is_file():
                continue
            try:
                record = json.loads(path.read_text())
                kind = record.get("study")
            except (json.JSONDecodeError, AttributeError):
                continue
            if kind == study or (kind is None and key in record):
                tags.append(path.stem)
        return tags

    @property
    def front(self) -> Path:
        return self.root / "pareto.csv"

    @property
    def search(self) -> Path:  # search.json: the search's summary and front
        return self.root / "search.json"

    @property
    def trials(self) -> Path:  # student_trials/: Ray Tune's experiment (a trial's checkpoints, progress.csv)
        return self.root / "student_trials"

    @property
    def study(self) -> Path:  # optuna.db: the Optuna study behind the search (SQLite)
        return self.root / "optuna.db"

    def expert_record(self, buckets: int) -> Path:  # expert_<buckets>.json: a gold expert's fit record
        return self.root / f"expert_{buckets}.json"

    def models(self, prefix: str = "students") -> Path:  # students/ (int8 folders), or a study's <tag>_students/
        return self.root / prefix

    def fp32_model(self, model_dir: str | Path) -> Path:  # <models>_fp32/<trial>: the torch student of an int8 folder
        model_dir = Path(model_dir)
        return self.models(f"{model_dir.parent.name}_fp32") / model_dir.name

    def study_trials(self, tag: str) -> Path:  # <tag>_trials/: a study's Ray Tune experiment
        return self.root / f"{tag}_trials"

    @property
    def predictions(self) -> Path:  # predictions/: the front members' test and out-of-domain predictions
        return self.root / "predictions"

    def prediction(self, trial_id: str, split: str) -> Path:
        return self.predictions / f"{trial_id}_{split}.npy"

    def baseline(self, suffix: str) -> Path:  # baseline_tfidf.json / _pred.npz: the report's TF-IDF baseline
        return self.root / f"baseline_tfidf{suffix}"

    def record(self, name: str, missing_ok: bool = False) -> dict:
        """A JSON record: ``data``, ``run``, ``search``, ``teacher_record`` or ``marker`` ({} when ``missing_ok``
        and it is not there)."""
        path = getattr(self, name)
        if missing_ok and not path.is_file():
            return {}
        return json.loads(path.read_text())

    def derive(self, target: Path, teacher_parts: tuple[str, ...] | None = None) -> Experiment:
        """A new experiment at ``target`` that starts from this one's teacher (studies that give the students other
        targets): the layout marker and the data record copied, the teacher's ``teacher_parts`` (all when None)
        hard-linked, so a file the new experiment changes must be replaced (an atomic rename), never rewritten."""
        if target.exists():
            raise FileExistsError(f"{target} exists; choose a new --to directory")
        new = Experiment(target)
        target.mkdir(parents=True)
        for name in ("marker", "data"):
            if getattr(self, name).is_file():
                shutil.copy2(getattr(self, name), getattr(new, name))
        if teacher_parts is None:
            copy_linked(self.teacher, new.teacher)
        else:
            new.teacher.mkdir()
            for part in teacher_parts:
                copy_linked(self.teacher / part, new.teacher / part)
        return new

    @classmethod
    def open(cls, root: Path, resume: bool, min_free_gib: float) -> Experiment:
        """Create or reopen an experiment folder (refusing one written by another layout version) after checking
        that its disk can take a run."""
        if not resume or root.is_dir():
            check_storage(root if root.is_dir() else root.parent, min_free_gib)
        ex = cls(root)
        if resume and not cls(root).trials.is_dir():
            raise FileNotFoundError(f"--resume: {root} holds no student search to resume; run without --resume "
                                    f"(or give the --storage/--name of the interrupted run)")
        if ex.marker.is_file():
            try:
                info = json.loads(ex.marker.read_text())
            except json.JSONDecodeError:
                info = {}
            if info.get("format") != FORMAT or info.get("version") != VERSION:
                raise ValueError(f"{root} was written by another version of this tool ({ex.marker.name}: format "
                                 f"{info.get('format')!r}, version {info.get('version')!r}; this is version "
                                 f"{VERSION}); use a new --name or move that directory away")
        root.mkdir(parents=True, exist_ok=True)
        if not ex.marker.is_file():
            write_json(ex.marker, {"format": FORMAT, "version": VERSION})
        return ex


def copy_linked(src: Path, dst: Path) -> None:
    """Copy a tree with hard links where the filesystem allows (the teacher folders are ~100 MB)."""
    def link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
    shutil.copytree(src, dst, copy_function=link)


def check_storage(path: Path, min_free_gib: float) -> None:
    """Fail before any work when the experiment directory cannot be written or its disk is nearly full."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as e:
        raise ValueError(f"--storage: cannot write to {path} ({e.strerror or e}); choose a writable --storage "
                         f"directory") from None
    free = shutil.disk_usage(path).free / 2**30
    if free < min_free_gib:
        raise ValueError(f"--storage: {path} has {free:.1f} GiB free; a full run needs about {min_free_gib:g} GiB "
                         f"(teacher checkpoints, transfer sets, 40 trials' checkpoints and models); free some space, "
                         f"choose another --storage, or lower --min-free-gib")
