"""Where and with what a run happened: CPU model and flags, threads, versions, git commit."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


def cpu_info() -> dict:
    model, flags = platform.processor() or "unknown", []
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "Model name":
                model = val.strip()
            elif key.strip() == "Flags":
                flags = val.split()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"model": model, "cores": os.cpu_count(),
            "simd_flags": [f for f in INTERESTING_FLAGS if f in flags],
            "lacks": [f for f in INTERESTING_FLAGS if f not in flags]}


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[1]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    import importlib.metadata as md

    pkgs = ("torch", "transformers", "tokenizers", "ray", "optuna", "onnxruntime", "datasets", "numpy")
    out = {"python": sys.version.split()[0]}
    for p in pkgs:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


def portable_command(command: str | None) -> str | None:
    """A recorded command without this machine's absolute paths: each absolute path keeps its last two
    parts (``/home/me/data/rusentiment`` -> ``data/rusentiment``), so the experiment, its report and an
    exported folder name no path of the machine that made them."""
    if not command:
        return command
    return " ".join(str(Path(*Path(t).parts[-2:])) if t.startswith("/") else t for t in command.split(" "))


def provenance(argv: list[str] | None = None) -> dict:
    return {"command": portable_command(" ".join(argv if argv is not None else sys.argv)), "cpu": cpu_info(),
            "versions": versions(), "git_commit": git_commit()}
