"""The exported folder's ``README.md``: a Hugging Face model card written with huggingface_hub's
``ModelCard`` / ``ModelCardData`` / ``EvalResult`` (``model-index`` results: dataset, metric, value;
``base_model``), its text taken from the folder's ``config.json`` and the experiment's data record,
so a student of any dataset gets its own name, labels and licence note."""
from __future__ import annotations

RUSENTIMENT = {"name": "RuSentiment", "id": "rusentiment", "license": "cc-by-nc-sa-4.0",
               "note": "trained on RuSentiment (CC BY-NC-SA 4.0): non-commercial, share-alike. Cite Rogers et al. "
                       "(2018), RuSentiment, COLING."}
BASE_MODELS = {"e5-small": "intfloat/multilingual-e5-small"}  # offline teacher name -> its hub id


def dataset_info(data: dict) -> dict:
    """Name, id and licence note of the experiment's data (``data.json``)."""
    ds = data.get("dataset") or {"kind": "rusentiment"}
    if ds.get("kind", "rusentiment") == "rusentiment":
        return RUSENTIMENT
    name = str(ds.get("train", "own data")).rstrip("/").rsplit("/", 1)[-1].split(".")[0].removesuffix("_train")
    return {"name": name, "id": name, "license": "other",
            "note": f"trained on {name}: the data's own licence applies to this model; check it before sharing."}


def lexical_note(config: dict) -> str:
    lex, expert, out = config.get("lexical"), config.get("expert"), ""
    if lex:
        out += (f"; a lexical branch (hashed character {lex['char_min']}-{lex['char_max']}-grams and word uni-/bigrams, "
                f"{lex['buckets']:,} buckets, int8 table in `lexical.npz`, computed in numpy by the runtime) adds "
                f"to the transformer's logits")
    if expert and expert.get("weight", 0) > 0:
        fit = expert.get("fit") or {}
        out += (f"; fused with a gold-label lexical expert (`expert.npz`: hashed character {expert['char_min']}-"
                f"{expert['char_max']}-grams and word uni-/bigrams, {expert['buckets']:,} buckets, sublinear tf-idf, "
                f"a {fit.get('model', 'linear')} model fitted on the training posts' gold labels, calibrated, int8): "
                f"the answer is (1 - w) log p_student + w log p_expert with w = {expert['weight']:.2f}, chosen on "
                f"validation")
    return out


def soft_labels_note(config: dict) -> str:
    soft = config["provenance"].get("soft_labels")
    if not soft:
        return ""
    return (f" (soft labels: {soft.get('tag')} of {', '.join(soft.get('members', []))}, "
            f"test weighted F1 {soft['test']['weighted_f1']:.4f})")


def model_card(config: dict, data: dict, with_runtime: bool = True) -> str:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    prov = config["provenance"]
    m, trial, ds = prov.get("metrics", {}), prov.get("trial", {}), dataset_info(data)
    fmt = lambda k: f"{m[k]:.4f}" if isinstance(m.get(k), float) else "n/a"
    form = config.get("quantization_form", "int8")  # folders from before the choices existed were int8
    bias = config.get("class_bias")  # analysis/export.py --class-bias fit
    title = f"{ds['name']} student ({trial.get('layers')} x {trial.get('hidden')}, {form} ONNX)"
    split = "test" if isinstance(m.get("test_weighted_f1"), float) else "validation"
    results = [EvalResult(task_type="text-classification", dataset_type=ds["id"], dataset_name=ds["name"],
                          dataset_split=split, metric_type=key, metric_name=name,
                          metric_value=round(float(m[f"{prefix}{key}"]), 4))
               for prefix in (("test_",) if split == "test" else ("int8_val_",))
               for key, name in (("weighted_f1", "weighted F1"), ("accuracy", "accuracy"), ("macro_f1", "macro F1"))
               if isinstance(m.get(f"{prefix}{key}"), float)]
    if isinstance(m.get("ood_weighted_f1"), float):
        results.append(EvalResult(task_type="text-classification", dataset_type="rusentitweet",
                                  dataset_name="RuSentiTweet (out of domain)", dataset_split="test",
                                  metric_type="weighted_f1", metric_name="weighted F1",
                                  metric_value=round(float(m["ood_weighted_f1"]), 4)))
    card_data = ModelCardData(
        language="ru", license=ds["license"], library_name="onnxruntime", pipeline_tag="text-classification",
        tags=["text-classification", "russian", "distillation", "onnx", form],
        datasets=[ds["id"]], base_model=BASE_MODELS.get(prov.get("teacher"), prov.get("teacher")),
        model_name=title, eval_results=results or None)
    figures = "\n".join([
        "| figure | value |", "|---|---|",
        f"| validation weighted F1 (as {'the trial answered, before the class bias' if bias else 'exported'}) | "
        f"{fmt('export_val_weighted_f1' if 'export_val_weighted_f1' in m else 'int8_val_weighted_f1')} |",
        *([f"| class-prior bias fitted on validation ({', '.join(f'{k} {v:+.3f}' for k, v in zip(config['labels'], bias['bias']))}) | "
           f"validation weighted F1 {bias.get('val_wf1_gain_cv', float('nan')):+.4f}, cross-fitted over {bias.get('folds')} folds |"]
          if bias else []),
        f"| test accuracy / weighted F1 / macro F1 | {fmt('test_accuracy')} / {fmt('test_weighted_f1')} / "
        f"{fmt('test_macro_f1')} |",
        *([f"| out-of-domain (RuSentiTweet test) weighted F1 | {fmt('ood_weighted_f1')} |"]
          if isinstance(m.get("ood_weighted_f1"), float) else []),
        f"| median / p95 batch-1 latency, 1 thread, model only | {fmt('latency_ms_p50')} / {fmt('latency_ms_p95')} ms |",
        f"| median / p95 batch-1 latency, 1 thread, end to end | {fmt('e2e_ms_p50')} / {fmt('e2e_ms_p95')} ms |",
        f"| size (model + tokenizer + lexical table) | {fmt('size_mib')} MiB |",
        f"| parameters | {m.get('params', 'n/a')} |"])
    if with_runtime:  # the folder carries its runtime (inference/) and requirements.txt
        usage = ('```bash\npip install -r requirements.txt          # onnxruntime, tokenizers, numpy: no torch\n'
                 'python -m inference --model . "Отличный день!"\n```')
    else:  # a folder without its runtime (the shipped default model): the package's runtime reads it
        usage = ('This folder has no runtime of its own: the `rusentiment-kd` package reads it (install the '
                 'repository it came with: `pip install .` at its root; onnxruntime, tokenizers, numpy, no torch).\n\n'
                 '```bash\nrusentiment-classify --model . "Отличный день!"\n```')
    content = f"""---
{card_data.to_yaml()}
---
# {title}

Labels: {', '.join(config['labels'])}. Distilled from `{prov.get('teacher')}`{soft_labels_note(config)};
quantization: {config.get('quantization')}{lexical_note(config)}. Runs without torch:

{usage}

```python
from inference import SentimentClassifier
clf = SentimentClassifier.load(".")       # this folder
clf("Отличный день!")                     # {{"label": ..., "score": ...}}
```

{figures}

Measured during the search (or study) trial (other trials may have shared the machine; latency on a busy or
virtual machine varies by tens of percent) on {(prov.get('cpu') or {}).get('model', '?')}; command:
`{prov.get('command', '?')}`.

Licence: {ds['note']} Teacher weights (multilingual-e5-small) are MIT.
"""
    return str(ModelCard(content))
