"""Ray Tune's experiment state, kept whole across a killed driver (``--resume``).

Ray Tune (2.60) writes ``experiment_state-<session>.json`` into a staging folder on the driver, then copies it to
the experiment folder without a rename: a driver killed during the copy leaves that file empty or cut short.
``Tuner.restore`` then logs "Failed to restore the run state" and *starts the search again*, so the resumed run
silently forgets every trial before the kill and ``trials.csv`` lists only the new ones (seen in
``tests/test_scale_and_faults.py::test_kill_driver_and_resume``: 1 row of 4, the state file 0 bytes).

``StateBackup``, a Tune callback, copies each staged state file to ``<name>.complete`` in the experiment folder,
atomically, right after Tune has written it. ``repair`` runs before a restore: a state file that does not parse
is replaced by its last complete copy, or, with no copy, the resume is refused with what to do, never silently
restarted. When the kill cuts the copy of a save short, the backup holds that same save; when it lands while Tune
writes the staged file, the backup is one save behind and may name a trial's checkpoint before the last, so the
search keeps two checkpoints per trial (``CheckpointConfig(num_to_keep=2)``).
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from inference.atomic import atomic_file

log = logging.getLogger(__name__)
PATTERN = "experiment_state-*.json"
BACKUP_SUFFIX = ".complete"


def newest_state(trials: Path) -> Path | None:
    """The state file Tune restores from: the newest ``experiment_state-<date>.json`` (names sort by date)."""
    files = sorted(Path(trials).glob(PATTERN))
    return files[-1] if files else None


def is_complete(path: Path) -> bool:
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(state, dict) and "trial_data" in state


def backup(path: Path, trials: Path | None = None) -> bool:
    """Copy a complete state file to ``<trials>/<name>.complete`` (atomically; ``trials``: the file's own folder by
    default); False, and no copy, for one that is not complete."""
    if not is_complete(path):
        return False
    with atomic_file(Path(trials or path.parent) / (path.name + BACKUP_SUFFIX)) as tmp:
        shutil.copyfile(path, tmp)
    return True


def staged_state(trials: Path) -> Path | None:
    """The state file as Tune wrote it, in the driver's staging folder (``<ray session>/artifacts/<time>/<experiment
    folder name>/driver_artifacts``), before its copy to ``trials`` (the copy a kill can cut short). Ray's private
    helper names the session folder; None when it is not there (then the copy in ``trials`` is backed up)."""
    try:
        from ray.train.constants import _get_ray_train_session_dir

        staged = Path(_get_ray_train_session_dir()).glob(f"*/{Path(trials).name}/driver_artifacts/{PATTERN}")
        return max(staged, key=lambda p: p.stat().st_mtime_ns, default=None)
    except (ImportError, AssertionError, AttributeError, OSError):
        return None


def repair(trials: Path) -> None:
    """Before ``Tuner.restore``: make the newest state file a complete one, from its backup if it was cut short."""
    path = newest_state(trials)
    if path is None or is_complete(path):
        return
    copy = path.with_name(path.name + BACKUP_SUFFIX)
    size = path.stat().st_size
    if not is_complete(copy):
        raise ValueError(f"--resume: {path} is cut short ({size} bytes: the driver was killed while Ray Tune wrote "
                         f"it) and there is no complete copy ({copy.name}); the search cannot resume its trials. "
                         f"Run it again without --resume under another --name")
    with atomic_file(path) as tmp:
        shutil.copyfile(copy, tmp)
    log.warning("%s was cut short (%d bytes: the driver was killed while Ray Tune wrote it); restored its last "
                "complete copy, so trials resume from the checkpoints that copy records", path.name, size)


def state_backup(trials: Path):
    """A Ray Tune callback that backs up the state file right after Tune has written it: Tune writes
    ``experiment_state-*.json`` into its staging folder, asks its callbacks for their state (``get_state``), and
    only then copies the file to ``trials``."""
    from ray import tune

    class StateBackup(tune.Callback):
        def __init__(self):
            self.trials = str(trials)

        def get_state(self):
            staged = staged_state(Path(self.trials))
            if staged is not None:
                backup(staged, Path(self.trials))
            elif (path := newest_state(Path(self.trials))) is not None:
                backup(path)
            return None  # nothing of its own to restore

    return StateBackup()
