"""The wheel: every package and the shipped model inside; installed with the runtime dependencies
only (onnxruntime, tokenizers, numpy — no torch) it classifies a text with the default model, from
Python and from its console script, outside the checkout. Needs the package index (pip) once."""
from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("analysis", "corpus", "inference", "modeling", "search", "spaces", "studies", "teachers", "trainables")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, cwd=out)
    (path,) = out.glob("rusentiment_kd-*.whl")
    return path


def test_wheel_holds_every_package_and_the_shipped_model(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names, package
    for file in ("model.onnx", "tokenizer.json", "config.json"):
        assert f"inference/models/rusentiment-student/{file}" in names
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(r.split()[1].split(">")[0] for r in requires) == ["numpy", "onnxruntime", "tokenizers"]


@pytest.mark.index
@pytest.mark.slow
def test_runtime_install_classifies_without_torch(wheel, tmp_path):
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True)
    run = dict(capture_output=True, text=True, cwd=tmp_path)  # outside the checkout: only the install is seen
    assert subprocess.run([str(py), "-c", "import torch"], **run).returncode != 0
    code = ("from inference import SentimentClassifier; clf = SentimentClassifier.load(); "
            "print(clf.labels); print(clf(['Отличный день!'])[0]['label'])")
    done = subprocess.run([str(py), "-c", code], **run)
    assert done.returncode == 0, done.stderr
    labels, label = done.stdout.splitlines()
    assert label in labels
    cli = subprocess.run([str(env_dir / "bin" / "rusentiment-classify"), "Отличный день!"], **run)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["label"] in labels
