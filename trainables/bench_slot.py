"""Serialise CPU benchmarks: a single named Ray actor (max_concurrency=1) runs them all.

A trial sends its model folder's bytes and waits (its own CPUs idle), so two benchmarks never
overlap and a benchmark never overlaps its own trial's training. With one trial per machine (the
default on small machines: --cpus-per-trial = all cores) nothing else runs beside it either; with
two 1-CPU trials on 2 cores the other trial trains meanwhile, so search-time latencies carry some
noise (the report re-measures the chosen student in a quiet run). ``start_benchmark_slot(resource)``
can pin the actor to a node holding a custom resource (for a library caller; no CLI flag sets it).
The slot survives the loss of its node: Ray restarts it elsewhere and runs the call again (a benchmark is
idempotent); should it still be unreachable, the trial measures in place and says so.
"""
from __future__ import annotations

import tempfile
import logging
from pathlib import Path

import ray

log = logging.getLogger(__name__)
ACTOR_NAME = "rusentiment_kd_benchmark"
NAMESPACE = "rusentiment_kd"


@ray.remote(max_concurrency=1, num_cpus=0, max_restarts=-1, max_task_retries=2)
class BenchmarkSlot:
    def run(self, files: dict[str, bytes], texts: list[str], n_latency: int) -> dict:
        from inference.benchmark import benchmark

        with tempfile.TemporaryDirectory() as d:
            for name, blob in files.items():
                (Path(d) / name).write_bytes(blob)
            return benchmark(Path(d), texts, n_latency)


def start_benchmark_slot(resource: str | None = None):
    opts = {"name": ACTOR_NAME, "namespace": NAMESPACE, "get_if_exists": True, "lifetime": "detached"}
    if resource:
        opts["resources"] = {resource: 1}
    return BenchmarkSlot.options(**opts).remote()


def benchmark_serialised(folder: Path, texts: list[str], n_latency: int) -> dict:
    files = {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
    from inference.benchmark import POOL, benchmark

    try:
        slot = ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
    except ValueError:  # no driver-started slot (e.g. a trainable run by hand): measure in place
        return benchmark(Path(folder), texts, n_latency)
    try:
        return ray.get(slot.run.remote(files, texts[:POOL], n_latency))
    except ray.exceptions.RayActorError as e:  # its node died and Ray could not bring it back in time
        log.warning("the benchmark slot is unreachable (%s); measuring in this trial's process",
                    str(e).strip().splitlines()[0][:200])
        return benchmark(Path(folder), texts, n_latency)
