"""Time a student's training steps on this CPU: posts per second of the search's own step (``StudentRun.step``: its losses,
optimizer step, bf16 autocast when the CPU has it and the attention choice of ``trainables.device.training_attention``;
the feature / hidden / token terms when the --student fields give them a weight), and with
``--profile`` the operators that take the time (``torch.profiler``).

    python -m studies.training_step --bundle .bundle --threads 1 --steps 60 \\
        --student layers=4,hidden=256,heads=8,ffn=512,vocab=8000,init=pruned,transfer=real,transfer_ratio=0.5,lexical_buckets=65536,dropout=0.1,attention_dropout=0.1

The bundle is ``studies.train_students pack``'s. Run two at once (``&``) to see what two 1-CPU trials of a
search get side by side.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("studies.training_step")


def time_steps(bundle: Path, fields: str, threads: int, steps: int, profile: bool) -> dict:
    """Optimizer steps per second of the search's own training step (``trainables.student.StudentRun.step``)."""
    from spaces.student import StudentConfig
    from studies.ablation import parse_overrides
    from studies.train_students import load_bundle
    from trainables.device import training_attention, uses_bf16
    from trainables.student import StudentRun

    cfg = StudentConfig(**{**parse_overrides(fields, "--student"), "threads": threads})
    data, _ = load_bundle(bundle, [cfg])
    run = StudentRun.build(cfg, data)
    bf16 = uses_bf16(cfg.bf16)

    def step():
        index = run.next_batch()
        run.step(index)
        return len(index)

    run.model.train()
    with training_attention(run.model.encoder, bf16):
        attention = run.model.encoder.config._attn_implementation
        for _ in range(3):  # warm-up
            step()
        t0, posts = time.perf_counter(), 0
        if profile:
            from torch.profiler import ProfilerActivity, profile as torch_profile

            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                posts = sum(step() for _ in range(steps))
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        else:
            posts = sum(step() for _ in range(steps))
        seconds = time.perf_counter() - t0
    return {"posts_per_s": round(posts / seconds, 1), "steps": steps, "seconds": round(seconds, 2), "threads": threads,
            "bf16": bf16, "attention": attention,
            "dropout": cfg.dropout, "attention_dropout": cfg.attention_dropout}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, required=True, help="a studies.train_students pack bundle")
    p.add_argument("--student", default="", help="StudentConfig fields, FIELD=VALUE,...")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--profile", action="store_true", help="also print the operators that take the time")
    args = p.parse_args(argv)
    from search.cli import run_cli

    def work():
        import json

        print(json.dumps(time_steps(args.bundle, args.student, args.threads, args.steps, args.profile)))
        return 0

    return run_cli(work, (FileNotFoundError, ValueError), log)


if __name__ == "__main__":
    sys.exit(main())
