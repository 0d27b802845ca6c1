"""Ray Tune's experiment state, kept whole across a killed driver (``--resume``).

Ray Tune (2.60) writes ``experiment_state-<session>.json`` into a staging folder on the driver, then copies it to
the experiment folder without a rename: a driver killed during the copy leaves that file empty or cut short.
``Tuner.restore`` then logs "Failed to restore the run state" and *starts the search again*, so the resumed run
silently forgets every trial before the kill and ``trials.csv`` lists only the new ones (seen in
``tests/test_scale_and_faults.py::test_kill_driver_and_resume``: 1 row of 4, the state file 0 bytes).

``StateBackup``, a Tune callback, keeps each save whole: right after Tune has written a save into its staging folder
(the experiment state, and beside it the search algorithm's ``search_gen_state-<session>.json`` and
``searcher-state-<session>.pkl``), it packs those files into one ``complete_state-<session>.zip`` in the experiment
folder, atomically. ``repair`` runs before a restore and puts the last complete save back as one set: the state
file cut short by a kill, and also files an unfinished copy left one save behind. The set matters: restored from
a newer state but an older ``search_gen_state``, the search generator counts fewer trials than the state holds and
starts one trial too many (seen in the kill test, CI run of 5e28f16 and here: 5 trials of 4). With no complete save
and a state that does not parse, the resume is refused with what to do, never silently restarted. When the kill
lands while Tune writes the staged files, the last complete save is one behind and may name a trial's checkpoint
before the last, so the search keeps two checkpoints per trial (``CheckpointConfig(num_to_keep=2)``).
"""
from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

from inference.atomic import atomic_file

log = logging.getLogger(__name__)
PREFIX, SUFFIX = "experiment_state-", ".json"  # Tune's TuneController.CKPT_FILE_TMPL
PATTERN = f"{PREFIX}*{SUFFIX}"
BACKUP = "complete_state-{}.zip"  # matches none of Tune's own file patterns


def newest_state(trials: Path) -> Path | None:
    """The state file Tune restores from: the newest ``experiment_state-<date>.json`` (names sort by date)."""
    files = sorted(Path(trials).glob(PATTERN))
    return files[-1] if files else None


def session_of(state: Path) -> str:
    return Path(state).name[len(PREFIX):-len(SUFFIX)]


def backup_of(state: Path, trials: Path | None = None) -> Path:
    """Where the complete save of ``state``'s session is kept: ``<trials>/complete_state-<session>.zip``."""
    return Path(trials or Path(state).parent) / BACKUP.format(session_of(state))


def parses(data: bytes) -> bool:
    try:
        state = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(state, dict) and "trial_data" in state


def is_complete(path: Path) -> bool:
    try:
        return parses(Path(path).read_bytes())
    except OSError:
        return False


def backup(state: Path, trials: Path | None = None) -> bool:
    """Pack ``state`` and the files of the same save beside it (every ``*-<session>.json`` and ``.pkl``: the search
    algorithm's, the callbacks') into ``backup_of(state, trials)``, atomically; False, and nothing written, when
    ``state`` is not complete."""
    state = Path(state)
    if not is_complete(state):
        return False
    session = session_of(state)
    files = sorted(p for p in state.parent.iterdir() if p.is_file() and p.suffix in (".json", ".pkl")
                   and p.stem.endswith("-" + session))
    with atomic_file(backup_of(state, trials)) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for f in files:
            zf.writestr(f.name, f.read_bytes())
    return True


def saved_files(bundle: Path, state_name: str) -> dict[str, bytes] | None:
    """The files of a complete save (name -> bytes); None when there is none, or it lacks a complete ``state_name``."""
    try:
        with zipfile.ZipFile(bundle) as zf:
            files = {name: zf.read(name) for name in zf.namelist()}
    except (OSError, zipfile.BadZipFile, KeyError):
        return None
    return files if parses(files.get(state_name, b"")) else None


def staged_state(trials: Path) -> Path | None:
    """The state file as Tune wrote it, in the driver's staging folder (``<ray session>/artifacts/<time>/<experiment
    folder name>/driver_artifacts``), before its copy to ``trials`` (the copy a kill can cut short). Ray's private
    helper names the session folder; None when it is not there (then the copy in ``trials`` is backed up). A process
    that ran an earlier search keeps that search's staging folder too: the newest file is the one Tune has just written."""
    try:
        from ray.train.constants import _get_ray_train_session_dir

        staged = Path(_get_ray_train_session_dir()).glob(f"*/{Path(trials).name}/driver_artifacts/{PATTERN}")
        return max(staged, key=lambda p: p.stat().st_mtime_ns, default=None)
    except (ImportError, AssertionError, AttributeError, OSError):
        return None


def repair(trials: Path) -> None:
    """Before ``Tuner.restore``: put the last complete save of the newest session back into ``trials``, as one set
    (the state file, the search generator's and searcher's files); refuse when the state does not parse and no
    complete save was kept."""
    trials = Path(trials)
    path = newest_state(trials)
    if path is None:
        return
    cut = not is_complete(path)
    saved = saved_files(backup_of(path), path.name)
    if saved is None:
        if cut:
            raise ValueError(f"--resume: {path} is cut short ({path.stat().st_size} bytes: the driver was killed while "
                             f"Ray Tune wrote it) and there is no complete save ({backup_of(path).name}); the search "
                             f"cannot resume its trials. Run it again without --resume under another --name")
        return  # a search from before the backup existed, or killed before its first save
    size_before = path.stat().st_size
    stale = sorted(name for name, data in saved.items()
                   if not (trials / name).is_file() or (trials / name).read_bytes() != data)
    for name in stale:
        tmp = trials / f".{name}.restoring"  # a dot name matches none of Tune's patterns, even if killed here
        tmp.write_bytes(saved[name])
        os.replace(tmp, trials / name)
    if cut:
        log.warning("%s was cut short (%d bytes: the driver was killed while Ray Tune wrote it); restored the last "
                    "complete save (%s), so trials resume from the checkpoints it records", path.name, size_before,
                    ", ".join(stale))
    elif stale:
        log.warning("the experiment folder held an older or partial copy of the last save (%s: the driver was killed "
                    "while Ray Tune copied it); restored the last complete save", ", ".join(stale))


def state_backup(trials: Path):
    """A Ray Tune callback that backs up each save right after Tune has written it: Tune writes
    ``experiment_state-*.json`` and then the search algorithm's files into its staging folder, asks its callbacks
    for their state (``get_state``), and only then copies the folder to ``trials``."""
    from ray import tune

    class StateBackup(tune.Callback):
        def __init__(self):
            self.trials = str(trials)

        def get_state(self):
            staged = staged_state(Path(self.trials))
            if staged is not None:
                backup(staged, Path(self.trials))
            elif (path := newest_state(Path(self.trials))) is not None:
                backup(path)  # (no staging folder found: the copy in the experiment folder, with the files beside it)
            return None  # nothing of its own to restore

    return StateBackup()
