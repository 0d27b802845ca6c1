"""Teacher recipes and a teacher ensemble: the "stronger teacher" measurement of issue 6.

Fine-tunes the cached teacher encoder (``<experiment>/teacher/base``) with several recipes through
the same ``trainables.teacher`` code the Ray trainable runs (``train_epoch``), on whatever device
is given: longer fine-tuning with early stopping on validation, layer-wise lr decay, more seeds.
The val-best recipe is then repeated with further seeds; members whose averaged logits do best on
validation form the ensemble. Model selection uses validation only; test is reported beside it.

Writes ``recipes.json`` (per-epoch validation, best epoch, val/test metrics per member and per
ensemble size, wall times, device) and ``teacher_logits.npz`` (float16 logits of the ensemble and
of the best single member on train / val / test and on the transfer sets, for distillation).

On a 2-core CPU one epoch takes ~26 min, so this is run on a GPU when one is lent::

    python -m studies.teacher_recipes --base experiments/rusentiment/teacher/base \\
        --data-dir ../shared/data/rusentiment --out results/rusentiment/teacher_recipes --device cuda
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from corpus import encode_texts, load_splits
from corpus.encode import text_hash
from corpus.augment import generate
from modeling import classification_metrics
from search.transfer_stage import parse_transfer
from teachers.e5 import E5_TEXT_PREFIX
from trainables.loop import predict_logits
from trainables.worker import folder_bytes
from trainables.teacher import TeacherData, TeacherTrainConfig, start_fine_tune, train_epoch

log = logging.getLogger("studies.teacher_recipes")

# name -> (config, early-stopping patience in epochs); the first is the CPU teacher's recipe
RECIPES = {
    "base": (TeacherTrainConfig(lr=8e-5, epochs=3), 3),
    "llrd": (TeacherTrainConfig(lr=1.5e-4, epochs=4, layer_decay=0.8), 2),
    "long": (TeacherTrainConfig(lr=8e-5, epochs=6), 2),
    "long-llrd": (TeacherTrainConfig(lr=1.5e-4, epochs=6, layer_decay=0.8), 2),
}


def teacher_text_settings(base: Path) -> tuple[str, str]:
    """(text prefix, pooling) the teacher stage used for this encoder (``teacher.json`` beside
    ``base``); e5's when the base is a bare directory."""
    info = base.parent / "teacher.json"
    if info.is_file():
        source = json.loads(info.read_text())["source"]
        return source["text_prefix"], source["pooling"]
    return E5_TEXT_PREFIX, "mean"


def rounded(m: dict) -> dict:
    return {k: round(float(v), 4) for k, v in m.items()}


def fine_tune(data: TeacherData, cfg: TeacherTrainConfig, patience: int, device: str, deadline: float):
    """Train with the recipe; keep the val-best epoch (early stopping). Returns (model, history)."""
    model, _, optimizer, scheduler, rng = start_fine_tune(data, cfg, device)
    history, best, best_state, stale = [], -1.0, None, 0
    for epoch in range(cfg.epochs):
        metrics = train_epoch(model, data, cfg, optimizer, scheduler, rng, epoch)
        history.append(rounded(metrics))
        log.info("  epoch %d: val weighted F1 %.4f (%.0f s)", epoch + 1, metrics["val_weighted_f1"],
                 metrics["epoch_total_s"])
        if metrics["val_weighted_f1"] > best:
            best, stale = metrics["val_weighted_f1"], 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            stale += 1
        if stale >= patience:
            log.info("  early stop after epoch %d", epoch + 1)
            break
        if time.time() + metrics["epoch_total_s"] > deadline:
            log.info("  stopping at epoch %d: the deadline would pass", epoch + 1)
            break
    model.load_state_dict(best_state)
    return model, history


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=Path, required=True, help="teacher encoder directory (teacher/base)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--recipes", nargs="*", default=["base", "llrd", "long"], choices=list(RECIPES))
    p.add_argument("--seed-recipe", choices=list(RECIPES), default=None,
                   help="recipe the extra seeds repeat (default: the val-best of --recipes)")
    p.add_argument("--member-transfer", action="store_true",
                   help="also save each member's logits on the transfer sets (to merge runs)")
    p.add_argument("--seeds", type=int, nargs="+", default=[14, 15, 16],
                   help="extra seeds for the val-best recipe (ensemble members)")
    p.add_argument("--transfer", nargs="*", default=["tang:25000", "join:25000", "span:25000", "tang:200000"])
    p.add_argument("--epochs-scale", type=float, default=1.0, help="multiply recipe epochs (smoke tests)")
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--budget-s", type=float, default=420, help="stop starting new members after this")
    args = p.parse_args(argv)
    from corpus import DataError
    from search.cli import run_cli

    def work():
        t_start = time.time()
        deadline = t_start + args.budget_s
        args.out.mkdir(parents=True, exist_ok=True)

        splits = load_splits(args.data_dir, max_train_samples=args.max_train_samples)
        base_files = folder_bytes(args.base)
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(args.base)
        prefix, pooling = teacher_text_settings(args.base)
        enc = {n: encode_texts(df.text, tokenizer, 128, prefix)
               for n, df in (("train", splits.train), ("val", splits.val), ("test", splits.test))}
        labels = {n: df.label.to_numpy() for n, df in (("train", splits.train), ("val", splits.val), ("test", splits.test))}
        train_texts = splits.train.text.tolist()
        specs = [parse_transfer(t, 13, len(train_texts)) for t in args.transfer]
        transfer = {}
        for spec in specs:
            texts = generate(train_texts, spec)
            transfer[spec.name] = (texts, encode_texts(texts, tokenizer, 128, prefix))
        info = {"device": args.device, "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                "torch": torch.__version__, "sizes": {n: len(e) for n, e in enc.items()},
                "val_text_sha": text_hash(splits.val.text),
                "transfer_text_sha": {k: text_hash(t) for k, (t, _) in transfer.items()},
                "prep_s": round(time.time() - t_start, 1), "members": {}}
        data = TeacherData(base_files, tokenizer.pad_token_id, enc["train"], labels["train"], enc["val"], labels["val"])
        logits: dict[str, dict[str, np.ndarray]] = {}
        models: dict = {}  # member name -> fine-tuned classifier (kept to label the transfer sets)

        def run(name: str, cfg: TeacherTrainConfig, patience: int) -> None:
            cfg = replace(cfg, pooling=pooling, text_prefix=prefix,
                          epochs=max(1, round(cfg.epochs * args.epochs_scale)))
            log.info("member %s: %s", name, cfg)
            t0 = time.time()
            model, history = fine_tune(data, cfg, patience, args.device, deadline)
            out = {n: predict_logits(model, e, tokenizer.pad_token_id, batch_size=256) for n, e in enc.items()}
            logits[name] = out
            info["members"][name] = {
                "config": asdict(cfg), "history": history,
                "best_epoch": int(np.argmax([h["val_weighted_f1"] for h in history]) + 1),
                "val": rounded(classification_metrics(labels["val"], out["val"].argmax(1))),
                "test": rounded(classification_metrics(labels["test"], out["test"].argmax(1))),
                "wall_s": round(time.time() - t0, 1)}
            models[name] = model
            log.info("member %s: val wF1 %.4f test wF1 %.4f (%.0f s)", name, info["members"][name]["val"]["weighted_f1"],
                     info["members"][name]["test"]["weighted_f1"], time.time() - t0)
            save(info, args.out)

        for r in args.recipes:
            if time.time() > deadline:
                log.warning("budget spent; skipping recipe %s", r)
                continue
            run(r, *RECIPES[r])
        val_best = args.seed_recipe or max(info["members"], key=lambda m: info["members"][m]["val"]["weighted_f1"])
        for seed in args.seeds:
            mean_s = np.mean([m["wall_s"] for m in info["members"].values()] or [0.0])
            if time.time() + mean_s > deadline:
                log.warning("budget spent; not training seed %d", seed)
                continue
            cfg, patience = RECIPES[val_best]
            run(f"{val_best}-s{seed}", replace(cfg, seed=seed), patience)

        # ensembles: members ranked by validation, mean of logits of the top k; k chosen on validation
        ranked = sorted(info["members"], key=lambda m: -info["members"][m]["val"]["weighted_f1"])
        info["ensembles"] = []
        for k in range(1, len(ranked) + 1):
            mean = {n: np.mean([logits[m][n] for m in ranked[:k]], axis=0) for n in enc}
            info["ensembles"].append({"members": ranked[:k],
                                      "val": rounded(classification_metrics(labels["val"], mean["val"].argmax(1))),
                                      "test": rounded(classification_metrics(labels["test"], mean["test"].argmax(1)))})
        chosen = max(info["ensembles"], key=lambda e: e["val"]["weighted_f1"])
        info["chosen_ensemble"] = chosen["members"]
        log.info("ensemble of %d (val-chosen): val wF1 %.4f test wF1 %.4f", len(chosen["members"]),
                 chosen["val"]["weighted_f1"], chosen["test"]["weighted_f1"])

        arrays = {f"member/{m}/{n}": logits[m][n].astype(np.float16) for m in logits for n in enc}
        t0 = time.time()
        for tag, members in (("ensemble", chosen["members"]), ("single", ranked[:1])):
            for n in enc:
                arrays[f"{tag}/{n}"] = np.mean([logits[m][n] for m in members], axis=0).astype(np.float16)
            for tname, (_, e) in transfer.items():
                arrays[f"{tag}/transfer/{tname}"] = np.mean(
                    [predict_logits(models[m], e, tokenizer.pad_token_id, batch_size=512)
                     for m in members], axis=0).astype(np.float16)
        if args.member_transfer:
            for m in logits:
                for tname, (_, e) in transfer.items():
                    arrays[f"member/{m}/transfer/{tname}"] = predict_logits(
                        models[m], e, tokenizer.pad_token_id, batch_size=512).astype(np.float16)
        info["transfer_labelling_s"] = round(time.time() - t0, 1)
        np.savez_compressed(args.out / "teacher_logits.npz", **arrays)
        info["wall_s"] = round(time.time() - t_start, 1)
        save(info, args.out)
        log.info("wrote %s (%.0f s in all)", args.out, info["wall_s"])

    return run_cli(work, (DataError, FileNotFoundError), log)


def save(info: dict, out: Path) -> None:
    (out / "recipes.json").write_text(json.dumps(info, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
