"""Where and in what precision training runs: the CPU's flags, CUDA or CPU, bf16 autocast, and the attention
form a training step uses."""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from functools import lru_cache

import torch

from modeling.classifier import attention_as


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """bf16 autocast only pays off with native bf16 matmuls (AMX or AVX-512 BF16)."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def training_device(use_gpu: bool = True) -> torch.device:
    """CUDA when one is visible to this process (Ray sets CUDA_VISIBLE_DEVICES for a trial given a
    GPU; a trial without one sees none), else the CPU."""
    return torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")


def uses_bf16(mode: str, device: str = "cpu") -> bool:
    """Whether ``mode`` ("auto": bf16 on CUDA and on CPUs with native bf16, "bf16" or "off") autocasts."""
    if mode not in ("auto", "bf16", "off"):
        raise ValueError(f"bf16 must be 'auto', 'bf16' or 'off', got {mode!r}")
    return mode == "bf16" or (mode == "auto" and (device == "cuda" or cpu_has_fast_bf16()))


def autocast_context(mode: str, device: str = "cpu"):
    """bf16 autocast when ``uses_bf16(mode, device)``, else nothing."""
    return torch.autocast(device, dtype=torch.bfloat16) if uses_bf16(mode, device) else nullcontext()


@contextmanager
def training_attention(encoder, bf16: bool, device: str = "cpu"):
    """Training steps of a Hugging Face ``encoder`` without attention dropout under CPU bf16 autocast
    run its attention "eager": SDPA then takes its fused CPU kernel, whose bf16 backward is slow
    (measured on a 4x256 student, 1 thread, AMX CPU: 104 posts/s with SDPA, 187 eager; with
    attention dropout SDPA runs its math path, 154). Validation keeps the encoder's own."""
    eager = device == "cpu" and bf16 and encoder.config.attention_probs_dropout_prob == 0
    with attention_as(encoder, "eager") if eager else nullcontext():
        yield
