"""The exported folder in the Hugging Face layout: Optimum's ``ORTModelForSequenceClassification`` and
a transformers ``pipeline("text-classification")`` load it and give the torch-free runtime's labels.

Optimum (optimum-onnx) needs transformers 4.x and torch, while this project's environment holds
transformers 5: the Optimum test installs them into a throw-away virtualenv (the package index once,
about a minute) and runs there, outside the checkout."""
from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REAL_DATA

LABELS = ("плохо", "так себе", "хорошо")  # three classes, unlike RuSentiment's
PREFIX = "query: "


@pytest.fixture(scope="module")
def hf_folder(tiny_bert, tmp_path_factory):
    from modeling import ClassifierConfig, EncoderClassifier
    from modeling.onnx_export import export_folder
    from teachers import load_encoder, resolve_teacher

    encoder, tok = load_encoder(resolve_teacher(str(tiny_bert), tmp_path_factory.mktemp("c")))
    model = EncoderClassifier(encoder, ClassifierConfig(labels=LABELS, max_length=32, text_prefix=PREFIX))
    return export_folder(model, tok, tmp_path_factory.mktemp("hf") / "model"), tok


def texts(n: int = 300) -> list[str]:
    """Real posts when the data is here (RuSentiment's test file), else the fixture's texts."""
    if REAL_DATA:
        import pandas as pd

        return pd.read_csv(Path(REAL_DATA) / "rusentiment_test.csv").text.head(n).tolist()
    from tests.fixtures import tiny_texts
    import random

    rng = random.Random(0)
    return [t for label in ("negative", "neutral", "positive") for t in tiny_texts(label, n // 3, rng)]


def test_layout_files_and_the_baked_prefix(hf_folder):
    from tokenizers import Tokenizer

    folder, tok = hf_folder
    config = json.loads((folder / "config.json").read_text())
    assert config["hf_layout"] and config["model_type"] == "bert"
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {str(i): label for i, label in enumerate(LABELS)}
    assert config["text_prefix"] == "" and config["trained_text_prefix"] == PREFIX
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    baked = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for text in texts(100):  # the folder's tokenizer alone gives the ids the student was trained on
        assert baked.encode(text).ids == tok(PREFIX + text)["input_ids"]


@pytest.mark.index
@pytest.mark.slow
def test_optimum_pipeline_gives_the_runtime_labels(hf_folder, tmp_path):
    from inference import SentimentClassifier

    folder, _ = hf_folder
    sample = texts()
    env_dir = tmp_path / "optimum-env"
    venv.create(env_dir, with_pip=True)
    py = str(env_dir / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "torch==2.13.0", "optimum-onnx[onnxruntime]"], check=True)
    (tmp_path / "texts.json").write_text(json.dumps(sample, ensure_ascii=False))
    code = ("import json, sys\n"
            "from optimum.onnxruntime import ORTModelForSequenceClassification\n"
            "from transformers import AutoTokenizer, pipeline\n"
            f"model = ORTModelForSequenceClassification.from_pretrained({str(folder)!r})\n"
            f"tok = AutoTokenizer.from_pretrained({str(folder)!r})\n"
            "pipe = pipeline('text-classification', model=model, tokenizer=tok)\n"
            "texts = json.load(open('texts.json'))\n"
            "out = pipe(texts, truncation=True, max_length=32, top_k=None)\n"
            "print(json.dumps([{r['label']: r['score'] for r in rows} for rows in out], ensure_ascii=False))\n")
    done = subprocess.run([py, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    optimum = json.loads(done.stdout.strip().splitlines()[-1])
    logits = SentimentClassifier.load(folder).logits(sample, 1)  # one text a run, as the pipeline feeds them:
    # dynamic int8 scales activations per run, so batch-mates move scores in the 3rd decimal
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert [max(o, key=o.get) for o in optimum] == [LABELS[i] for i in probs.argmax(1)]  # the same labels
    np.testing.assert_allclose([[o[label] for label in LABELS] for o in optimum], probs, atol=1e-5)  # and scores
