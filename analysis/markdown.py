"""``report.md`` from the report dictionary built by ``analysis.report``."""
from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import pandas as pd

from spaces.student import StudentConfig


def _f(x, digits=4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _ci(row: dict, split: str) -> str:
    lo, hi = row.get(f"{split}_wf1_low"), row.get(f"{split}_wf1_high")
    return f" [{_f(lo, 3)}, {_f(hi, 3)}]" if lo is not None else ""


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def dataset_title(d: dict) -> str:
    """RuSentiment, or the name of the user's training file (``reviews_train.csv`` -> ``reviews``)."""
    from analysis.model_card import dataset_info

    return dataset_info(d)["name"]


def test_name(r: dict) -> str:
    d = r["data"]
    n = f"{d['sizes']['test']:,}" if d["sizes"].get("test") else f"{d['sizes']['val']:,} validation"
    return f"the {n} {dataset_title(d)} test posts" if d["sizes"].get("test") else f"the {n} posts"


def ood_name(r: dict) -> str:
    """The out-of-domain test set's name: RuSentiTweet's or RuSentiment's test, else its file name."""
    path = str(r.get("ood_test") or "")
    for key, name in (("rusentitweet", "RuSentiTweet test"), ("rusentiment", "RuSentiment test")):
        if key in path.lower():
            return name
    return Path(path).name or "out-of-domain test"


def size_limit_mib(r: dict) -> float:
    """The size target: the report's --max-size-mib when one was given, else the search's (search/config.py)."""
    from search.config import SearchConfig

    given = (r.get("selection") or {}).get("max_size_mb")
    return float(given) if given is not None else next(f.default for f in fields(SearchConfig) if f.name == "max_size_mib")


def targets_markdown(r: dict) -> list[str]:
    """The issue's targets for the int8 student, measured in this run beside TF-IDF and the teacher.
    Latencies are end to end (text in, logits out: tokenisation / vectorisation included)."""
    student, teacher = r["four_configurations"][-1], r["four_configurations"][0]
    base, vs = r["baseline"], r.get("versus_baseline") or {}
    lines = ["## Targets (int8 student, measured in this run)", "",
             "Latency: median batch-1, 1 thread, end to end (tokenisation, the lexical n-grams, the model and the "
             "gold expert's fusion; TF-IDF: vectorisation + decision function). Intervals: bootstrap 95 %; differences: paired "
             "bootstrap over the same posts.", "",
             "| target | measured | met |", "|---|---|---|"]
    t = vs.get("test")
    if t:
        lines.append(f"| test weighted F1 above TF-IDF's ({_f(base['test_weighted_f1'])}), by more than the interval | "
                     f"{_f(student['test_weighted_f1'])}; difference {t['diff']:+.4f} [{t['low']:+.4f}, {t['high']:+.4f}] | "
                     f"{_yes(t['low'] > 0)} |")
    if dataset_title(r["data"]) == "RuSentiment":  # the benchmark's goal; other data has none
        lines.append(f"| test weighted F1 >= .75 (goal) | {_f(student['test_weighted_f1'])}{_ci(student, 'test')} | "
                     f"{_yes(student['test_weighted_f1'] >= 0.75)} |")
    limit = size_limit_mib(r)
    lines.append(f"| size <= {limit:g} MiB (everything the runtime loads: model, tokenizer, lexical table, expert) | "
                 f"{_f(student['size_mib'], 2)} MiB | {_yes(student['size_mib'] <= limit)} |")
    if base.get("e2e_ms_p50"):
        lines.append(f"| latency <= half of TF-IDF's ({_f(base['e2e_ms_p50'], 3)} ms) | {_f(student['e2e_ms_p50'], 3)} ms | "
                     f"{_yes(student['e2e_ms_p50'] <= base['e2e_ms_p50'] / 2)} |")
    lines.append(f"| >= 60x faster than the fp32 torch teacher ({_f(teacher['e2e_ms_p50'], 2)} ms) | "
                 f"{student['e2e_speedup_vs_teacher']:.1f}x | {_yes(student['e2e_speedup_vs_teacher'] >= 60)} |")
    o = vs.get("ood")
    if o:
        lines.append(f"| {ood_name(r)} weighted F1 >= TF-IDF's + .03 ({_f(base['ood_weighted_f1'])} + .03) | "
                     f"{_f(student['ood_weighted_f1'])}{_ci(student, 'ood')}; difference {o['diff']:+.4f} "
                     f"[{o['low']:+.4f}, {o['high']:+.4f}] | {_yes(o['diff'] >= 0.03)} |")
    return lines + [""]


def configs_markdown(r: dict) -> list[str]:
    ood = any("ood_weighted_f1" in c for c in r["four_configurations"])
    lines = ["## Four configurations and the baseline (measured in this run)", "",
             f"Latency: batch 1, 1 thread, median over {r['four_configurations'][0].get('n_latency', 300)} sampled "
             "validation posts: model alone and end to end "
             f"(text in, logits out). Test: {test_name(r)}" + (f"; OOD: the {ood_name(r)} posts" if ood else "")
             + " (never used for training or selection). Weighted F1 with its bootstrap 95 % interval.", "",
             "| configuration | size MiB | params | model p50 ms | end-to-end p50 ms | batch-32 texts/s | test acc | "
             "test wF1 | test macro F1 | " + ("OOD wF1 | " if ood else "") + "speed-up (end to end) |",
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if ood else "") + "---|"]
    for c in r["four_configurations"]:
        lines.append(f"| {c['name']} | {_f(c['size_mib'], 2)} | {c['params']:,} | {_f(c['latency_ms_p50'], 3)} | "
                     f"{_f(c.get('e2e_ms_p50'), 3)} | {c['throughput_b32_per_s']:.0f} | {_f(c['test_accuracy'])} | "
                     f"{_f(c['test_weighted_f1'])}{_ci(c, 'test')} | {_f(c['test_macro_f1'])} | "
                     + (f"{_f(c.get('ood_weighted_f1'))}{_ci(c, 'ood')} | " if ood else "")
                     + f"{c.get('e2e_speedup_vs_teacher', float('nan')):.1f}x |")
    b = r["baseline"]
    lines.append(f"| {b['name']} (C={b['C']:g}; {b.get('fit_posts', '?'):,} posts) | {_f(b['size_mib'], 2)} (pickled) | - | - | "
                 f"{_f(b['latency_ms_p50'], 3)} | - | {_f(b['test_accuracy'])} | {_f(b['test_weighted_f1'])}{_ci(b, 'test')} | "
                 f"{_f(b['test_macro_f1'])} | " + (f"{_f(b.get('ood_weighted_f1'))}{_ci(b, 'ood')} | " if ood else "")
                 + "- |")
    if b.get("cv_weighted_f1"):
        lines += ["", f"TF-IDF's C: 5-fold cross-validation over all {b.get('fit_posts', '?'):,} labelled posts (train + "
                  "validation), mean weighted F1 by C: " + ", ".join(f"{c} {v:.4f}" for c, v in b["cv_weighted_f1"].items())
                  + ("" if b.get("c_bracketed", True) else " (the best C is at the grid's edge: not bracketed)")
                  + "; then refitted on all of them."]
    ra = r.get("ranking_agreement") or {}
    if ra:
        lines += ["", "Does validation rank students as test does? Spearman correlation of int8 validation and test "
                  "weighted F1 over students: " + "; ".join(
                      f"{k} ({v.get('val_from', 'this split')}): {_f(v['spearman'], 3)} over {v['students']} students"
                      for k, v in ra.items()) + "."]
    return lines + [""]


def expert_markdown(r: dict) -> list[str]:
    """The chosen student's two parts: the student alone, the gold expert alone, and the fused answer."""
    e = r.get("expert_parts")
    if not e:
        return []
    fit = e.get("fit") or {}
    lines = ["## The gold-label lexical expert (chosen student)", "",
             f"Hashed char 2-5 + word 1-2 n-grams, {e['buckets']:,} buckets, sublinear tf-idf, "
             f"{fit.get('model', '?')} with C={fit.get('C')} chosen by {fit.get('folds', '?')}-fold cross-fitting on "
             f"the training posts' gold labels (cross-fitted wF1 by C: {fit.get('cv_weighted_f1')}), calibrated on "
             f"out-of-fold scores, int8 table. Fusion: (1 - w) log p_student + w log p_expert with w = {e['weight']} "
             f"({e.get('weight_rule')}: the weight that minimises the fused model's validation cross-entropy).", "",
             "| split | part | accuracy | weighted F1 | macro F1 | fused minus this part [95 %] |", "|---|---|---|---|---|---|"]
    for split in ("test", "ood"):
        for name, m in (e.get(split) or {}).items():
            d = m["fused_minus_this"]
            lines.append(f"| {split if split == 'test' else ood_name(r)} | {name} | {_f(m['accuracy'])} | "
                         f"{_f(m['weighted_f1'])} | {_f(m['macro_f1'])} | {d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] |")
    return lines + [""]


def chosen_markdown(r: dict) -> list[str]:
    c = r["chosen"]
    keys = [f.name for f in fields(StudentConfig)] + ["vocab_size"]
    cm = r["confusion_matrix"]
    from search.pareto import limits_text

    sel = r["selection"]
    limits = sel.get("limits") or limits_text(sel.get("max_latency_ms"), sel.get("max_size_mb"))
    rule = f"given with --trial {sel['trial']}" if sel.get("trial") else sel["rule"]
    lines = ["## Chosen student", "", f"Trial `{c['trial_id']}` ({rule}; limits: {limits}).", "",
             "Configuration: " + ", ".join(f"{k}={c.get(k)}" for k in keys if k in c) + ".", ""]
    if c.get("fp32_e2e_ms_p50") is not None and not pd.isna(c.get("fp32_e2e_ms_p50")):
        lines += [f"Forms measured in its trial (end-to-end p50 / size): int8 {_f(c.get('e2e_ms_p50'), 3)} ms / "
                  f"{_f(c.get('size_mib'), 2)} MiB; fp32 ONNX {_f(c['fp32_e2e_ms_p50'], 3)} ms / "
                  f"{_f(c.get('fp32_size_mib'), 2)} MiB (validation wF1 int8 {_f(c.get('int8_val_weighted_f1'))}, "
                  f"fp32 {_f(c.get('val_weighted_f1'))}); `python -m analysis.export --quantization fp32` exports "
                  f"the other.", ""]
    lines += fidelity_lines(r.get("fidelity"))
    lines += ["Per-class F1 (int8, test): " + ", ".join(f"{k} {v:.3f}" for k, v in r["per_class_f1"].items()) + ".", "",
              "Confusion matrix (rows: true, columns: predicted):", "",
              "| | " + " | ".join(cm["labels"]) + " |", "|---" * (len(cm["labels"]) + 1) + "|"]
    for label, row in zip(cm["labels"], cm["rows_true_cols_pred"]):
        lines.append(f"| {label} | " + " | ".join(map(str, row)) + " |")
    return lines + [""]


def search_markdown(r: dict) -> list[str]:
    s, prov = r["search"], (r.get("run") or {}).get("provenance", {})
    if not s:
        return []
    lines = ["## Student search", "", f"Command: `{prov.get('command', '?')}`; git commit {prov.get('git_commit')}.", "",
             f"{s['trials']} trials ({s['status_counts']}) in {s['wall_time_s']:.0f} s ({s['wall_time_s'] / 60:.1f} min).",
             "", *trivial_lines(r),
             "Pareto front (int8 validation weighted F1 vs median end-to-end latency vs size; test figures for front "
             "members only, never used for selection):", "",
             "| trial | layers x hidden (heads, FFN) | vocab | transfer | lexical branch | gold expert (w) | val wF1 fp32 | "
             "val wF1 int8 | test wF1 | fidelity | end-to-end p50 ms | MiB | params |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in s["front"]:
        lines.append(f"| {m['trial_id']} | {m['layers']} x {m['hidden']} ({m['heads']}, {m['ffn']}) | {m['vocab_size']} | "
                     f"{m.get('transfer', 'none')} | {m.get('lexical_buckets', 0)} | {_expert(m)} | {_f(m['val_weighted_f1'])} | "
                     f"{_f(m['int8_val_weighted_f1'])} | {_f(m.get('test_weighted_f1'))} | "
                     f"{_f(m.get('fidelity_agreement'), 3)} | {_f(m['e2e_ms_p50'], 3)} | "
                     f"{_f(m['size_mib'], 2)} | {int(m['params']):,} |")
    costs = r.get("option_costs") or []
    if costs:
        lines += ["", "What each option costs (all trials; median training seconds per round = a quarter epoch, "
                  "1 thread; medians mix the architectures the trials drew):", "",
                  "| option | value | trials | median train s / round | median params | best int8 val wF1 |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {c['option']} | {c['value']} | {c['trials']} | {c['median_round_train_s']:.1f} | "
                  f"{c['median_params']:,.0f} | {_f(c['best_int8_val_weighted_f1'])} |" for c in costs]
    return lines + [""]


def fidelity_lines(f: dict | None) -> list[str]:
    """The chosen folder's fidelity to the teacher: overall, then one line per source of the held-out slice."""
    if not f:
        return ["Fidelity: no unlabelled pool was given, so no held-out slice to compare the student with its "
                "teacher on.", ""]
    from modeling.metrics import FIDELITY_PREFIX

    lines = [f"Fidelity to the teacher on {f['texts']:,} held-out unlabelled texts (`corpus/fidelity.py`: never "
             f"trained on, never selected on; the folder as shipped, int8 and fused): argmax agreement "
             f"**{f['fidelity_agreement']:.3f}**, mean KL(teacher || student) {f['fidelity_kl']:.3f} nats.", "",
             "| source | texts | agreement with the teacher |", "|---|---|---|"]
    for name, n in f["per_source_texts"].items():
        lines.append(f"| {name} | {n} | {f[FIDELITY_PREFIX + name]:.3f} |")
    return lines + [""]


def trivial_lines(r: dict) -> list[str]:
    """How many trials were no better than the trivial predictor on validation, and which."""
    t = r.get("trivial")
    if not t:
        return []
    n = len(t["trials"])
    ids = f": {', '.join(f'`{i}`' for i in t['trials'])}" if n else ""
    return [f"Trivial trials (int8 validation weighted F1 <= {t['val_weighted_f1']:.4f}, what the majority class or the "
            f"label prior scores without reading the text): **{n}**{ids}; marked in the plots and `trials.csv`, kept off "
            f"the front and out of the export's choices.", ""]


def report_title(d: dict) -> str:
    """RuSentiment's report, or own data's: named by its training file and classes."""
    name = dataset_title(d)
    if name == "RuSentiment":
        return "RuSentiment distillation report"
    train = str((d.get("dataset") or {}).get("train", "own data")).rstrip("/").rsplit("/", 1)[-1]
    classes = len(d.get("labels") or d["classes"]["train"])
    return f"Distillation report: own data `{train}` ({classes} classes)"


def _expert(m: dict) -> str:
    b = m.get("expert_buckets") or 0
    if not b or (isinstance(b, float) and math.isnan(b)):
        return "none"
    return f"{int(b):,} ({_f(m.get('expert_weight'), 2)})"


def teacher_markdown(r: dict) -> list[str]:
    t, run = r["teacher"], r.get("run") or {}
    wt = t["wall_time_s"]
    lines = ["## Teacher", "", f"`{t['stage']['teacher']}`, vocabulary {t['vocab']['kept_pieces']} of "
             f"{t['vocab']['original_pieces']} pieces; lr {t['best_config']['lr']}, {t['best_config']['epochs']} epochs, "
             f"pooling {t['best_config']['pooling']}. Stage wall time {wt['total']:.0f} s. Command: "
             f"`{(run.get('provenance') or {}).get('command', '?')}`.", ""] + _split_table("split", t)
    soft = t.get("soft_labels")
    if soft:
        lines += ["", f"Distillation targets (soft labels) in this experiment come from a teacher {soft['tag']}"
                  f" ({', '.join(soft['members'] or [])}; `python -m studies.teacher_recipes` on {soft['device']}, "
                  f"installed with `python -m studies.soft_labels`), not from the single teacher above, which is kept "
                  f"for student initialisation and the configuration table:", ""] + _split_table("soft labels", soft)
    return lines + [""]


def _split_table(title: str, metrics: dict) -> list[str]:
    """Accuracy / weighted F1 / macro F1 on validation and test."""
    return [f"| {title} | accuracy | weighted F1 | macro F1 |", "|---|---|---|---|"] + [
        f"| {s} | {metrics[s]['accuracy']:.4f} | {metrics[s]['weighted_f1']:.4f} | {metrics[s]['macro_f1']:.4f} |"
        for s in ("val", "test") if s in metrics]


def transfer_markdown(r: dict) -> list[str]:
    lines = []
    if r.get("transfer_sets"):
        lines += ["## Transfer sets (teacher-labelled, from training posts only)", "",
                  "| set | posts | labelled by | labelling s | teacher argmax classes | mean teacher confidence |",
                  "|---|---|---|---|---|---|"]
        for t in r["transfer_sets"]:
            took = f"{t['labelling_s']:.0f}" if t.get("labelling_s") is not None else "n/a"
            lines.append(f"| {t['name']} | {t['size']} | {t.get('labelled_by', 'the teacher, this machine')} | {took} | "
                         f"{t['teacher_argmax_classes']} | {t['mean_teacher_confidence']:.3f} |")
        lines.append("")
    if r.get("ablation"):
        lines += ablation_markdown(pd.DataFrame(r["ablation"]))
    if r.get("ablation_parts"):
        lines += parts_markdown(pd.DataFrame(r["ablation_parts"]), r)
    return lines


def parts_markdown(a: pd.DataFrame, r: dict) -> list[str]:
    """The lexical parts: each trained row alone and fused with the gold expert (same student)."""
    ood = "ood_weighted_f1" in a
    lines = ["## Ablation: the lexical parts (student alone / fused with the gold expert)", "",
             "Each trained row gives two: the student alone and the same student fused with the gold expert "
             "(fitted apart, so it changes no training step). Delta: paired bootstrap 95 % against the first row's "
             "student alone.", "",
             "| study | row | part | test wF1 [95 %] | test delta [95 %] |" + (f" {ood_name(r)} wF1 | delta [95 %] |" if ood else ""),
             "|---|---|---|---|---|" + ("---|---|" if ood else "")]
    for _, x in a.iterrows():
        line = (f"| {x.study} | {x.row} | {x.part} | {_f(x.get('test_weighted_f1'))} [{_f(x.get('test_wf1_low'), 3)}, "
                f"{_f(x.get('test_wf1_high'), 3)}] | {x.test_delta_wf1:+.4f} [{x.test_delta_low:+.3f}, "
                f"{x.test_delta_high:+.3f}] |")
        if ood:
            line += (f" {_f(x.ood_weighted_f1)} | {x.ood_delta_wf1:+.4f} [{x.ood_delta_low:+.3f}, "
                     f"{x.ood_delta_high:+.3f}] |")
        lines.append(line)
    return lines + [""]


def ablation_markdown(a: pd.DataFrame) -> list[str]:
    """Each lever as a row on one fixed student: int8 validation / test / out-of-domain weighted F1
    with intervals, the paired test difference to the study's first row, and the cost."""
    lines = ["## Ablation: each lever on one fixed student", "",
             "Intervals: bootstrap 95 %; delta: paired bootstrap against the study's first row.", "",
             "| study | row | student | int8 val wF1 | test wF1 [95 %] | test delta [95 %] | OOD wF1 | OOD delta | "
             "end-to-end ms | MiB | seconds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, x in a.iterrows():
        student = f"{x.layers}x{x.hidden} h{x.heads} ffn{x.ffn} vocab{x.get('vocab_size', x.vocab)}"
        delta = (f"{x.test_delta_wf1:+.4f} [{x.test_delta_low:+.3f}, {x.test_delta_high:+.3f}]"
                 if "test_delta_wf1" in x and not pd.isna(x.test_delta_wf1) else "n/a")
        ood_delta = f"{x.ood_delta_wf1:+.4f}" if "ood_delta_wf1" in x and not pd.isna(x.ood_delta_wf1) else "n/a"
        lines.append(f"| {x.get('study', 'ablation')} | {x.get('row', '')} `{x.get('overrides', '')}` | {student} | "
                     f"{_f(x.int8_val_weighted_f1)} | {_f(x.get('test_weighted_f1'))} [{_f(x.get('test_wf1_low'), 3)}, "
                     f"{_f(x.get('test_wf1_high'), 3)}] | {delta} | {_f(x.get('ood_weighted_f1'))} | {ood_delta} | "
                     f"{_f(x.get('e2e_ms_p50'), 3)} | {_f(x.get('size_mib'), 2)} | {_f(x.get('time_total_s'), 0)} |")
    return lines + [""]


def report_markdown(r: dict, trials: pd.DataFrame, front: pd.DataFrame) -> str:
    m = r["machine"]["cpu"]
    d = r["data"]
    md = [f"# {report_title(d)}", ""]
    if r.get("figures_on", "test") != "test":
        md += [f"**Every \"test\" figure in this report is on {r['figures_on']}**: the same posts chose the "
               f"student, so they overstate what new data would show.", ""]
    md += [f"Machine: {m['model']}, {m['cores']} cores; has {', '.join(m['simd_flags'])}; lacks {', '.join(m['lacks']) or 'none of them'}. "
          f"Report command: `{r['machine']['command']}`, git {r['machine']['git_commit']}.", ""]
    md += targets_markdown(r) + configs_markdown(r)
    md += ["## Pareto plots", "", f"Interactive version (hover a point for its trial, configuration and figures): "
           f"[{r.get('html', 'report.html')}]({r.get('html', 'report.html')}).", ""]
    md += [f"![{p}]({p})" for p in r["plots"]] + [""]
    md += chosen_markdown(r) + expert_markdown(r) + search_markdown(r) + transfer_markdown(r) + teacher_markdown(r)
    carved = {"random": "carved from the random posts only (like the test file)",
              "all": "carved from random + preselected posts", "train": "a stratified part of the training data",
              "given": "the given validation file"}.get(d.get("val_from"), d.get("val_from"))
    md += ["## Data", "", f"Source: {d.get('dataset') or {'kind': 'rusentiment'}}; classes in output order: "
           f"{', '.join(d.get('labels') or d['classes']['train'])}.", "",
           f"Validation split: seed {d['seed']}, {carved}; sizes {d['sizes']}.", "",
           "| class | train | val | test |", "|---|---|---|---|"]
    for c in d["classes"]["train"]:
        md.append(f"| {c} | {d['classes']['train'][c]} | {d['classes']['val'].get(c, 0)} | "
                  f"{d['classes']['test'].get(c, 0)} |")
    return "\n".join(md) + "\n"
