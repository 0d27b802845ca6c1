"""The one export path: classifier -> ONNX (fp32) -> ONNX Runtime dynamic int8 -> model folder.

Used by every student trial and by the final export. The folder is what ``inference`` loads:
``model.onnx`` (int8 unless ``quantize=False``), ``tokenizer.json``, ``config.json`` and, for a
student with a lexical branch, ``lexical.npz`` (its table: int8 with per-class scales, or fp32 with
``quantize=False``; the runtime computes the hashed n-grams in numpy and adds the table's sum to
the graph's logits).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from inference.atomic import atomic_directory
from inference.classifier import CONFIG_FILE, FORMAT, LEXICAL_FILE, MODEL_FILE, TOKENIZER_FILE

log = logging.getLogger(__name__)
OPSET = 17


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids, attention_mask)


def export_fp32(model, path: Path) -> Path:
    """Export logits(input_ids, attention_mask). The model's train/eval mode is left as it was."""
    was_training = model.training
    model.eval()
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    with torch.no_grad():
        torch.onnx.export(_LogitsOnly(model).eval(), (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "logits": {0: "batch"}})
    model.train(was_training)
    return path


def fuse_for_cpu(src: Path, dst: Path, model) -> Path:
    """ONNX Runtime's transformer fusions (SkipLayerNormalization, BiasGelu, ...) before PTQ."""
    from onnxruntime.transformers.optimizer import optimize_model

    cfg = model.encoder.config
    try:
        opt = optimize_model(str(src), model_type="bert", num_heads=cfg.num_attention_heads,
                             hidden_size=cfg.hidden_size)
        opt.save_model_to_file(str(dst))
        return dst
    except Exception as e:  # fusion is an optimisation; an unfusable graph stays as exported
        log.warning("ONNX Runtime fusion skipped for %s: %s", src.name, e)
        return src


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 PTQ of MatMul/Gemm weights *and* the embedding table (Gather)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm", "Gather"], per_channel=False,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst


def lexical_table(weight: torch.Tensor, quantize: bool) -> dict:
    """The lexical branch's table for ``lexical.npz``: symmetric per-class int8 (with ``scale``) or fp32."""
    w = weight.detach().float().cpu().numpy()
    if not quantize:
        return {"table": w}
    import numpy as np

    scale = np.maximum(np.abs(w).max(0), 1e-12) / 127.0
    return {"table": np.clip(np.round(w / scale), -127, 127).astype(np.int8), "scale": scale.astype(np.float32)}


def export_folder(model, tokenizer, out: Path, quantize: bool = True, provenance: dict | None = None) -> Path:
    """Write the self-contained model folder atomically (a temp dir renamed into place)."""
    out = Path(out)
    with atomic_directory(out) as tmp:
        fp32 = fuse_for_cpu(export_fp32(model, tmp / "model.raw.onnx"), tmp / "model.fp32.onnx", model)
        if quantize:
            quantize_int8(fp32, tmp / MODEL_FILE)
        else:
            fp32.rename(tmp / MODEL_FILE)
        for extra in tmp.glob("model.*.onnx"):
            extra.unlink()
        tokenizer.backend_tokenizer.save(str(tmp / TOKENIZER_FILE))
        cfg = model.config
        if getattr(model, "lexical", None) is not None:
            import numpy as np

            with open(tmp / LEXICAL_FILE, "wb") as f:
                np.savez(f, **lexical_table(model.lexical.weight, quantize))
        config = {"format": FORMAT, "version": 1, "labels": list(cfg.labels), "max_length": cfg.max_length,
                  "text_prefix": cfg.text_prefix, "pad_id": int(tokenizer.pad_token_id),
                  "quantization": "onnxruntime dynamic int8 (MatMul, Gemm, Gather: embeddings included)"
                                  if quantize else "none (fp32)",
                  "parameters": int(sum(p.numel() for p in model.parameters())),
                  "lexical": cfg.lexical,
                  "provenance": provenance or {}}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False))
    return out
