"""Scale out and survive faults: a real two-node Ray cluster, SIGKILL + --resume, determinism.

The driver runs as a subprocess (``python search/run.py``) exactly as a user runs it.
"""
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from search.tune_state import newest_state
from tests.fixtures import with_teacher

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def tiny_run_args(tiny_bert, tiny_data, storage, name, trials):
    return [sys.executable, str(ROOT / "search" / "run.py"), "--teacher", str(tiny_bert), "--data-dir", str(tiny_data),
            "--storage", str(storage), "--name", name, "--trials", str(trials), "--teacher-epochs", "1", "--bench-texts", "20",
            "--max-epochs", "1", "--cpus-per-trial", "1", "--transfer", "--feature-kd", "0", "--max-layers", "1",
            "--hidden", "96", "128", "--inits", "teacher", "random"]  # the tiny teacher's 26-dim heads cut no such shape


def env():
    # RAY_AUTH_MODE=disabled: a throw-away local test cluster; Ray 2.60's token auth would need the
    # head's token shared with the second node
    e = dict(os.environ, HF_HUB_OFFLINE="1", RAY_DEDUP_LOGS="0", PYTHONUNBUFFERED="1", RAY_AUTH_MODE="disabled")
    e.pop("RAY_ADDRESS", None)
    return e


def progress_files(experiment: Path):
    """(trial folder, its progress.csv as read now) for every trial with reports; files being
    written (empty, half a line) are skipped."""
    for prog in (experiment / "student_trials").glob("*/progress.csv"):
        try:
            df = pd.read_csv(prog)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            continue
        if len(df):
            yield prog.parent, df


def trial_epochs(folder: Path) -> int | None:
    """The trial's epochs from its params.json; None while Tune is still writing that file."""
    try:
        return json.loads((folder / "params.json").read_text())["epochs"]
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def finished_trials(experiment: Path) -> dict[str, int]:
    """trial folder -> rows in its progress.csv, for trials that reached their last round (4 rounds an epoch)."""
    return {folder.name: len(df) for folder, df in progress_files(experiment)
            if (epochs := trial_epochs(folder)) and df["round"].max() >= epochs * 4}


def cluster_pids(*markers: str) -> set[int]:
    """Processes whose command line names every one of ``markers`` (always including the cluster's own temp
    dir, so no other Ray on this machine matches), and all their descendants (Ray's agents and workers
    rename themselves, so they are found through their parents)."""
    rows = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout.splitlines()
    procs = [(int(r.split(None, 2)[0]), int(r.split(None, 2)[1]), (r.split(None, 2) + [""])[2]) for r in rows if r.strip()]
    found = {pid for pid, _, args in procs if all(m in args for m in markers)}
    grew = True
    while grew:
        more = {pid for pid, ppid, _ in procs if ppid in found} - found
        found |= more
        grew = bool(more)
    return found


def wait_for(condition, timeout: float, what: str, driver: subprocess.Popen, log: Path):
    """Poll ``condition`` (every 0.1 s) until it returns something truthy, and return that; fail naming
    ``what`` and the driver's last output when ``timeout`` passes or the driver exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None:
        if found := condition():
            return found
        time.sleep(0.1)
    ended = f"the driver exited ({driver.returncode})" if driver.poll() is not None else f"{timeout:.0f} s passed"
    pytest.fail(f"{what}: {ended} first. Driver log:\n" + log.read_text()[-3000:])


def checkpoint_rounds(trial: Path) -> list[int]:
    """The rounds of the checkpoints a trial persisted (each holds ``train_state.pt`` with its round). A file still
    being written (the trial runs while the test polls: a zip without its central directory yet) is not counted
    until a later poll reads it whole."""
    import torch

    rounds = []
    for c in trial.glob("checkpoint_*"):
        if (c / "train_state.pt").is_file():
            try:
                rounds.append(torch.load(c / "train_state.pt", weights_only=False)["round"])
            except (RuntimeError, EOFError, OSError):  # half-written: read again at the next poll
                continue
    return sorted(rounds)


def end_group(proc: subprocess.Popen) -> None:
    """End a driver this test started (``start_new_session``) and everything in its process group, if still there."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_kill_driver_and_resume(tiny_bert, tiny_data, tiny_teacher, tmp_path, no_ray_in_process):
    """SIGKILL the driver (and all it started) while one trial is mid-way beside a finished one, cut Tune's state
    file in half, then ``--resume``: every trial ends ``completed`` (ASHA stops none: its grace is the last round),
    a finished trial is not run again, and every trial caught mid-way with a checkpoint goes on from that
    checkpoint to its last round. The test fails if the kill caught no such trial."""
    storage, trials = tmp_path / "exp", 4
    with_teacher(tiny_teacher, storage, "killed")
    args = tiny_run_args(tiny_bert, tiny_data, storage, "killed", trials) + ["--grace-rounds", "4"]
    log = open(tmp_path / "first.log", "w")
    experiment = storage / "killed"

    def one_done_one_midway():  # the finished trials and the mid-way ones with a checkpoint, when both exist
        done = finished_trials(experiment)
        # at most half its rounds reported: a trial seen at round 3 of 4 could finish before the kill lands (seen)
        midway = {folder.name for folder, df in progress_files(experiment)
                  if folder.name not in (done or {}) and len(df) <= 2 and checkpoint_rounds(folder)}
        return (done, midway) if done and midway else None

    # Tune saves the experiment state (which checkpoint each trial resumes from) at most every few seconds
    # ("auto"); the tiny trials' rounds take a second, so the test asks for a save at every step
    driver = subprocess.Popen(args, env=dict(env(), TUNE_GLOBAL_CHECKPOINT_S="0"), stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        # the snapshot the condition saw, then the kill at once (a trial finishing in between is not counted)
        before, _ = wait_for(one_done_one_midway, 400, "no finished trial beside one mid-way", driver,
                             tmp_path / "first.log")
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and everything it started, like a lost machine
        driver.wait()
    finally:
        end_group(driver)
    teacher_mtime = (experiment / "teacher" / "teacher.json").stat().st_mtime
    interrupted = {folder.name: (df["round"].tolist(), checkpoint_rounds(folder)) for folder, df in
                   progress_files(experiment) if folder.name not in before}
    assert not (experiment / "trials.csv").exists()
    # a kill can land while Ray Tune rewrites its state file (seen once, seed 20261217: the file was left empty and
    # Tune silently started the search again); cut it short on purpose, so the resume must use its complete copy
    state = newest_state(experiment / "student_trials")
    state.write_bytes(state.read_bytes()[:state.stat().st_size // 2])
    resumed = subprocess.Popen(args + ["--resume"], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = resumed.communicate(timeout=600)
    finally:
        end_group(resumed)
    assert resumed.returncode == 0, out[-3000:] + err[-3000:]
    assert "was cut short" in err and "teacher: reusing" in err
    assert (experiment / "teacher" / "teacher.json").stat().st_mtime == teacher_mtime  # not retrained
    df = pd.read_csv(experiment / "trials.csv", dtype={"trial_id": str})
    assert len(df) == trials and df.trial_id.is_unique
    assert (df.status == "completed").all(), df[["trial_id", "status", "error"]]  # nothing lost, nothing cut short
    after = finished_trials(experiment)
    for name, rows in before.items():  # a trial finished before the kill was not run again
        assert after[name] == rows
    caught = {name: v for name, v in interrupted.items() if v[1] and len(v[0]) < 4}  # mid-way, with a checkpoint
    assert caught, f"the kill caught no trial mid-way with a checkpoint: {interrupted}"
    for name, (rounds, saved) in caught.items():  # each goes on from its last checkpoint and completes
        now = pd.read_csv(experiment / "student_trials" / name / "progress.csv")["round"].tolist()
        assert now[:len(rounds)] == rounds and len(now) > len(rounds), (name, rounds, now)
        # from a checkpoint it had saved (the last one, or the one before when the kill fell between a
        # round's report and Tune's registration of its checkpoint), never from round 1
        first = now[len(rounds)]
        assert first - 1 in saved and first - 1 >= max(saved) - 1, (name, rounds, saved, now)
        assert now[-1] == 4 and now[len(rounds):] == list(range(first, 5)), (name, rounds, now)


@contextlib.contextmanager
def two_node_cluster():
    """``ray start --head`` + a second ``ray start --address`` node (1 CPU each, the second with a
    ``second_node`` resource) on this machine; yields the address and the cluster's private temp dir.
    Teardown kills only this cluster's processes (found by that dir), never other Ray instances here
    (``ray stop`` would kill every Ray on the machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    temp = Path(tempfile.mkdtemp(prefix="rkd-ray-", dir="/tmp"))  # short: Ray's socket paths are length-limited
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}",
                        *common], env=env(), check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", f"--address={address}", *common, '--resources={"second_node": 1}'],
                       env=env(), check=True, capture_output=True, timeout=120)
        yield address, temp
    finally:
        pids = cluster_pids(str(temp)) - {os.getpid()}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def second_node(temp: Path) -> tuple[str, set[int]]:
    """The second node's Ray node id and its processes: its raylet (socket ``raylet.1``) with every
    worker and agent under it, and its log monitor (``log_monitor.1``)."""
    rows = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines()
    raylet = [r for r in rows if str(temp) in r and "sockets/raylet.1 " in r]
    assert len(raylet) == 1, rows
    node_id = raylet[0].split("--node_id=")[1].split()[0]
    pids = cluster_pids(str(temp), "sockets/raylet.1 ") | cluster_pids(str(temp), "log_monitor.1")
    return node_id, pids


def progress_on(experiment: Path, node_id: str) -> dict[str, list[int]]:
    """trial folder -> the rounds it has reported, for trials with a report from ``node_id``."""
    return {folder.name: df["round"].tolist() for folder, df in progress_files(experiment)
            if "node_id" in df and (df.node_id == node_id).any()}


def test_worker_node_dies_mid_trial(tiny_bert, tiny_data, tiny_teacher, tmp_path, no_ray_in_process):
    """A search through ``--address`` on a real two-node cluster runs trials on both nodes; then a worker
    node (not the driver's) is killed -- raylet, its workers and agents, SIGKILL -- while
    one of its trials trains. The search finishes; that trial goes on from its last checkpoint on the
    surviving node (Tune's FailureConfig retry) and runs to its last round, benchmark included (the benchmark
    slot, had it lived on the dead node, is restarted by Ray); every trial is one row, and no trial that had
    finished is run again."""
    experiment = with_teacher(tiny_teacher, tmp_path / "exp", "dies")
    with two_node_cluster() as (address, temp):
        node_id, node_pids = second_node(temp)
        args = tiny_run_args(tiny_bert, tiny_data, tmp_path / "exp", "dies", 4) + [
            "--address", address, "--min-epochs", "2", "--max-epochs", "2",  # 8 rounds a trial: time to catch one
            "--grace-rounds", "8"]  # ASHA stops none early: which trials it keeps on tiny data is no part of this test
        log = open(tmp_path / "driver.log", "w")
        driver = subprocess.Popen(args, env=env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            # training: with no ASHA rung before the last round, a trial whose last report was rounds 1-7
            # is sure to be training its next round
            victim = wait_for(lambda: next((t for t, r in progress_on(experiment, node_id).items()
                                            if max(r) in range(1, 8)), None),
                              400, "no trial trained on the second node", driver, tmp_path / "driver.log")
            before = finished_trials(experiment)
            _, node_pids = second_node(temp)  # with the workers started since
            for pid in node_pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            assert driver.wait(timeout=600) == 0, (tmp_path / "driver.log").read_text()[-3000:]
        finally:
            end_group(driver)
    df = pd.read_csv(experiment / "trials.csv", dtype={"trial_id": str})
    assert len(df) == 4 and df.trial_id.is_unique, df
    # nothing lost: with ASHA's grace at the last round, every trial -- the victim and the others -- completed
    assert (df.status == "completed").all(), df[["trial_id", "status", "error", "node_id"]]
    row = df[[victim.endswith(t) or t in victim for t in df.trial_id]]
    assert len(row) == 1, (victim, df.trial_id.tolist())
    status = row.status.iloc[0]
    progress = pd.read_csv(experiment / "student_trials" / victim / "progress.csv")
    rounds_after, on_node = progress["round"].tolist(), progress.node_id.tolist()
    # the rounds reported from the dead node (read now: a report in flight at the kill may still have landed)
    rounds_before = [r for r, n in zip(rounds_after, on_node) if n == node_id]
    # resumed on the other node from its last *registered* checkpoint: Tune registers a round's checkpoint in a
    # save step after logging its result, so the round whose save was in flight at the kill is trained once more
    # (progress.csv then lists it twice; docs/faults.md) -- never more than that
    assert status == "completed", row.to_dict(orient="records")
    resumed = rounds_after[len(rounds_before):]
    assert rounds_before == list(range(1, len(rounds_before) + 1)), rounds_after
    assert resumed and set(on_node[len(rounds_before):]) == {n for n in on_node if n != node_id}, progress
    assert resumed[0] in (rounds_before[-1], rounds_before[-1] + 1), rounds_after
    assert resumed == list(range(resumed[0], 9)), rounds_after  # then every round to the last, once
    after = finished_trials(experiment)
    for name, rows in before.items():  # a trial that had finished is not run again
        assert after[name] == rows
    nodes = {n for _, p in progress_files(experiment) for n in p.node_id}
    assert len(nodes) == 2 and node_id in nodes  # the search ran through --address on both nodes
    print(json.dumps({"victim": victim, "status": status, "rounds_before": rounds_before, "rounds_after": rounds_after,
                      "nodes": df.node_id.nunique()}))


def test_unreachable_cluster_is_one_clear_line(tiny_bert, tiny_data, tmp_path, no_ray_in_process):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = tiny_run_args(tiny_bert, tiny_data, tmp_path, "x", 1) + ["--address", f"127.0.0.1:{port}"]
    run = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert f"--address 127.0.0.1:{port}: cannot connect to a Ray cluster" in run.stderr


def test_same_seed_same_sampled_configurations():
    from functools import partial

    from ray.tune.search.optuna import OptunaSearch

    from trainables.metrics import OBJECTIVES
    from spaces.student import StudentSpace, sample_student

    def sampled(seed):
        searcher = OptunaSearch(space=partial(sample_student, space=StudentSpace(transfer=("none", "tang"))),
                                metric=list(OBJECTIVES), mode=list(OBJECTIVES.values()), seed=seed)
        return [searcher.suggest(f"t{i}") for i in range(8)]

    assert sampled(13) == sampled(13)
    assert sampled(13) != sampled(14)


def test_failed_trial_is_recorded_with_its_error(tmp_path):
    """A trial that raised (after its bounded retries) is a row with status ``error`` and the last line of
    its error; the others are collected as usual and the front ignores the failed one."""
    from types import SimpleNamespace

    from search.pareto import pareto_front
    from search.student_stage import collect_trials
    from spaces.student import StudentConfig

    ok = SimpleNamespace(metrics={"trial_id": "good", "round": 4, "epoch": 1.0, "int8_val_weighted_f1": 0.6,
                                  "latency_ms_p50": 0.3, "e2e_ms_p50": 0.4, "size_mib": 1.0},
                         config={"epochs": 1, "layers": 1}, error=None, checkpoint=None, path=str(tmp_path / "good"))
    bad = SimpleNamespace(metrics={}, config={"epochs": 2, "layers": 4}, checkpoint=None, path=str(tmp_path / "bad"),
                          error=RuntimeError("Traceback ...\nRuntimeError: [enforce fail] out of memory allocating 1 GiB"))
    df = collect_trials([ok, bad], tmp_path, StudentConfig())
    row = df.set_index("trial_id").loc["bad"]
    assert row.status == "error" and row.error == "RuntimeError: [enforce fail] out of memory allocating 1 GiB"
    assert df.set_index("trial_id").loc["good"].status == "completed"
    assert list(pareto_front(df).trial_id) == ["good"]
