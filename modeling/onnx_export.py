"""The one export path: classifier -> ONNX (fp32) -> ONNX Runtime dynamic int8 -> model folder.

Used by every student trial and by the final export. The folder is what ``inference`` loads:
``model.onnx`` (int8 unless ``quantize=False``), ``tokenizer.json``, ``config.json``.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import torch

from inference.classifier import CONFIG_FILE, FORMAT, MODEL_FILE, TOKENIZER_FILE

log = logging.getLogger(__name__)
OPSET = 17


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids, attention_mask)


def export_fp32(model, path: Path) -> Path:
    model = model.eval()
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    with torch.no_grad():
        torch.onnx.export(_LogitsOnly(model), (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "logits": {0: "batch"}})
    return path


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 PTQ of MatMul/Gemm weights *and* the embedding table (Gather)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm", "Gather"], per_channel=False,
                     extra_options={"EnableSubgraph": False})
    return dst


def export_folder(model, tokenizer, out: Path, quantize: bool = True, provenance: dict | None = None) -> Path:
    """Write the self-contained model folder atomically (a temp dir renamed into place)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        fp32 = export_fp32(model, tmp / "model.fp32.onnx")
        if quantize:
            quantize_int8(fp32, tmp / MODEL_FILE)
            fp32.unlink()
        else:
            fp32.rename(tmp / MODEL_FILE)
        tokenizer.backend_tokenizer.save(str(tmp / TOKENIZER_FILE))
        cfg = model.config
        config = {"format": FORMAT, "version": 1, "labels": list(cfg.labels), "max_length": cfg.max_length,
                  "text_prefix": cfg.text_prefix, "pad_id": int(tokenizer.pad_token_id),
                  "quantization": "onnxruntime dynamic int8 (MatMul, Gemm, Gather)" if quantize else "none (fp32)",
                  "parameters": int(sum(p.numel() for p in model.parameters())),
                  "provenance": provenance or {}}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
