"""Time a student's training steps on this CPU: posts per second of a plain-KD step (the search's KD loss,
optimizer step, bf16 autocast when the CPU has it and the attention choice of ``trainables.loop.training_attention``;
no feature / hidden / token KD terms), and with
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
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("studies.training_step")


def time_steps(bundle: Path, fields: str, threads: int, steps: int, profile: bool) -> dict:
    import numpy as np
    import torch

    from corpus import encode_texts
    from corpus.rusentiment import cache_root
    from inference.lexical import LexicalSpec
    from modeling import EncoderClassifier
    from spaces.student import StudentConfig
    from studies.ablation import parse_overrides
    from studies.train_students import load_bundle
    from trainables.loop import (autocast_context, collate, linear_warmup_decay, optimizer_step, training_attention,
                                 uses_bf16, write_folder)
    from trainables.student import build_student, epoch_batches, kd_loss, param_groups

    torch.set_num_threads(threads)
    cfg = StudentConfig(**{**parse_overrides(fields, "--student"), "threads": threads})
    data, _ = load_bundle(bundle)
    with tempfile.TemporaryDirectory() as d:
        teacher, teacher_tok = EncoderClassifier.load(write_folder(data.teacher_files, Path(d)))
    model, tok = build_student(cfg, teacher, teacher_tok, data.train_texts, cache_root() / "encoded", data.importance)
    texts, hard, soft, _ = data.pool(cfg.transfer)
    train = encode_texts(texts, tok, cfg.max_length, model.config.text_prefix, cache_root() / "encoded")
    lex = data.lexical_pool(cfg.transfer, LexicalSpec(**model.config.lexical)) if model.lexical is not None else None
    optimizer = torch.optim.AdamW(param_groups(model, [], cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = linear_warmup_decay(optimizer, 10, 10 * steps)
    n_labelled = len(data.train_texts)
    draws = 0 if cfg.transfer == "none" else round(cfg.transfer_ratio * n_labelled)
    batches = epoch_batches(n_labelled, len(train), draws, train.lengths(), cfg.batch_size, np.random.default_rng(cfg.seed))
    labels, logits_t = torch.as_tensor(hard), torch.as_tensor(soft)
    bf16 = uses_bf16(cfg.bf16)

    def step():
        index = batches.pop()
        ids, mask = collate(train, index, tok.pad_token_id)
        with autocast_context(cfg.bf16):
            logits = model(ids, mask, lexical=lex.batch(index) if lex else None).float()
        optimizer_step(model, kd_loss(logits, logits_t[index], labels[index], cfg.kd_alpha, cfg.kd_temperature),
                       optimizer, scheduler)
        return len(index)

    model.train()
    with training_attention(model.encoder, bf16):
        attention = model.encoder.config._attn_implementation
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import json

    print(json.dumps(time_steps(args.bundle, args.student, args.threads, args.steps, args.profile)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
