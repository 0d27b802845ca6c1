"""The one export path: classifier -> ONNX (fp32) -> ONNX Runtime dynamic int8 -> model folder.

Used by every student trial and by the final export. The folder is what ``inference`` loads:
``model.onnx`` (int8 unless ``quantize=False``), ``tokenizer.json``, ``config.json`` and, for a
student with a lexical branch, ``lexical.npz`` (its table: int8 with per-class scales, or fp32 with
``quantize=False``; the runtime computes the hashed n-grams in numpy and adds the table's sum to
the graph's logits); for a student fused with a gold-label lexical expert, ``expert.npz``
(``inference.expert``; its weight in ``config.json``).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from inference.atomic import atomic_directory
from inference.classifier import CONFIG_FILE, FORMAT, LEXICAL_FILE, MODEL_FILE, TOKENIZER_FILE
from inference.expert import EXPERT_FILE

log = logging.getLogger(__name__)
OPSET = 17


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids, attention_mask)


def export_fp32(model, path: Path) -> Path:
    """Export logits(input_ids, attention_mask) with the encoder's attention written out "eager"
    (MatMul, Softmax, MatMul): ONNX Runtime's transformer optimizer fuses that form into one
    ``Attention`` node per layer and the embeddings into ``EmbedLayerNormalization``, where the SDPA
    form's mask plumbing stays ~25 small nodes a layer (1 x 128 student: 137 -> 52 nodes; 4 x 256:
    335 -> 112; same logits within 4e-6 in fp32). The model's train/eval mode and attention are left
    as they were."""
    from modeling.classifier import attention_as

    was_training = model.training
    model.eval()
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    with torch.no_grad(), attention_as(model.encoder, "eager"):
        torch.onnx.export(_LogitsOnly(model).eval(), (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "logits": {0: "batch"}})
    model.train(was_training)
    return path


def fuse_for_cpu(src: Path, dst: Path, model, attention: bool = True) -> Path:
    """ONNX Runtime's transformer fusions (SkipLayerNormalization, BiasGelu, ...) before PTQ; with
    ``attention``, also ``Attention`` and ``EmbedLayerNormalization`` (forms whose quantizer handles
    those: FUSED_ATTENTION_FORMS)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    cfg = model.encoder.config
    options = FusionOptions("bert")
    options.enable_attention = options.enable_embed_layer_norm = attention
    try:
        opt = optimize_model(str(src), model_type="bert", num_heads=cfg.num_attention_heads,
                             hidden_size=cfg.hidden_size, optimization_options=options)
        opt.save_model_to_file(str(dst))
        return dst
    except Exception as e:  # fusion is an optimisation; an unfusable graph stays as exported
        log.warning("ONNX Runtime fusion skipped for %s: %s", src.name, e)
        return src


# dynamic int8 quantizes these operators' weights: the fused attention's QKV (QAttention) and the
# embedding tables inside EmbedLayerNormalization (QEmbedLayerNormalization) included
INT8_OPS = ["MatMul", "Gemm", "Gather", "Attention", "EmbedLayerNormalization"]


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 PTQ of every weight (INT8_OPS), the embedding table included."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=INT8_OPS,
                     per_channel=False, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst


QUANTIZATIONS = {  # the choices of the export (and of studies/quantization.py's table), as config.json names them
    "int8": "onnxruntime dynamic int8 (MatMul, Gemm, Attention, embeddings)",
    "fp32": "none (fp32)",
    "int8-per-channel": "onnxruntime dynamic int8, per-channel weights (MatMul, Gemm, Attention, embeddings)",
    "int8-static": "onnxruntime static int8 (QDQ), activation ranges calibrated on training posts",
    "int4": "onnxruntime 4-bit block-wise weights (MatMulNBits, block 32) + dynamic int8 embeddings (Gather)",
}
# the forms whose quantizer also takes the fused Attention / EmbedLayerNormalization nodes; static QDQ and
# 4-bit quantize MatMul/Gather only, so they get a graph with those left unfused
FUSED_ATTENTION_FORMS = ("int8", "fp32", "int8-per-channel")


def quantize_graph(src: Path, dst: Path, kind: str, calibration=None) -> Path:
    """``src`` (fp32, fused) -> ``dst`` in the form ``kind`` (a key of QUANTIZATIONS). ``int8-static``
    needs ``calibration``: an iterable of ``{"input_ids": ..., "attention_mask": ...}`` int64 batches."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    if kind not in QUANTIZATIONS:
        raise ValueError(f"quantization {kind!r}: choose one of {', '.join(QUANTIZATIONS)}")
    if kind == "fp32":
        dst.write_bytes(Path(src).read_bytes())
    elif kind == "int8":
        quantize_int8(src, dst)
    elif kind == "int8-per-channel":
        # reduce_range (7-bit weights): ONNX Runtime's remedy for the u8s8 saturation of CPUs without VNNI (AVX2
        # only); there the 8-bit per-channel graph of tests/test_known_answers.py was off by .136 of the logits' range,
        # .065 with it (per-tensor int8: .049)
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=INT8_OPS,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    elif kind == "int8-static":
        if calibration is None:
            raise ValueError("quantization 'int8-static' needs calibration posts")
        from onnxruntime.quantization import CalibrationDataReader

        class Reader(CalibrationDataReader):
            def __init__(self, batches):
                self.it = iter(batches)

            def get_next(self):
                return next(self.it, None)

        # the classifier head (a Gemm on the pooled vector) stays fp32: its input's range gives no valid
        # int32 bias scale, and it is a few thousand weights
        head = [n.name for n in onnx.load(str(src)).graph.node if "logits" in n.output]
        quantize_static(str(src), str(dst), Reader(calibration), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=True,  # as int8-per-channel: 7-bit weights, no u8s8 saturation without VNNI
                        op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=head,
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    else:  # int4: MatMul weights to 4 bits, then the embedding table (Gather) to dynamic int8
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        q = MatMulNBitsQuantizer(onnx.load(str(src)), bits=4, block_size=32, is_symmetric=True,
                                 op_types_to_quantize=("MatMul",))
        q.process()
        tmp = Path(dst).with_suffix(".nbits.onnx")
        q.model.save_model_to_file(str(tmp), use_external_data_format=False)
        quantize_dynamic(str(tmp), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["Gather"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        tmp.unlink()
    return dst


def write_graph(model, dst: Path, kind: str, calibration=None) -> Path:
    """The model's graph in form ``kind`` at ``dst``: exported (``export_fp32``), fused for the CPU
    (attention too where the form's quantizer takes it: FUSED_ATTENTION_FORMS), quantized; the
    intermediate graphs beside ``dst`` are removed."""
    dst = Path(dst)
    raw, fused = dst.with_suffix(".raw.onnx"), dst.with_suffix(".fused.onnx")
    fp32 = fuse_for_cpu(export_fp32(model, raw), fused, model, attention=kind in FUSED_ATTENTION_FORMS)
    quantize_graph(fp32, dst, kind, calibration)
    for extra in (raw, fused):
        extra.unlink(missing_ok=True)
    return dst


def lexical_table(weight: torch.Tensor, quantize: bool) -> dict:
    """The lexical branch's table for ``lexical.npz``: symmetric per-class int8 (with ``scale``) or fp32."""
    w = weight.detach().float().cpu().numpy()
    if not quantize:
        return {"table": w}
    import numpy as np

    scale = np.maximum(np.abs(w).max(0), 1e-12) / 127.0
    return {"table": np.clip(np.round(w / scale), -127, 127).astype(np.int8), "scale": scale.astype(np.float32)}


def export_folder(model, tokenizer, out: Path, quantize: bool | str = True, provenance: dict | None = None,
                  calibration=None, expert=None, expert_info: dict | None = None) -> Path:
    """Write the self-contained model folder atomically (a temp dir renamed into place).
    ``quantize``: True (int8, the search's form), False (fp32) or a key of QUANTIZATIONS. ``expert``: a
    gold-label lexical expert (``inference.expert.GoldExpert``) to fuse with, written as ``expert.npz``;
    ``expert_info``: its fusion weight and how it was chosen / fitted (``config.json`` ``expert``)."""
    out = Path(out)
    kind = {True: "int8", False: "fp32"}.get(quantize, quantize)
    with atomic_directory(out) as tmp:
        write_graph(model, tmp / MODEL_FILE, kind, calibration)
        cfg = model.config
        tokenizer_json, prefix, hf = tokenizer.backend_tokenizer.to_str(pretty=False), cfg.text_prefix, {}
        # the Hugging Face layout (modeling/hf_layout.py) only where the graph is the whole model: a lexical branch
        # or a gold expert lives outside it, and Optimum would answer without them
        if getattr(model, "lexical", None) is None and expert is None:
            from modeling.hf_layout import bake_prefix, hf_config, tokenizer_config

            baked = bake_prefix(tokenizer_json, prefix)
            if baked is None:
                log.warning("%s: the text prefix %r cannot be baked into the tokenizer; no Hugging Face layout",
                            out, prefix)
            else:
                tokenizer_json, prefix = baked, ""
                hf = hf_config(model.encoder.config, list(cfg.labels))
                (tmp / "tokenizer_config.json").write_text(
                    json.dumps(tokenizer_config(tokenizer, cfg.max_length), indent=2, ensure_ascii=False))
        (tmp / TOKENIZER_FILE).write_text(tokenizer_json, encoding="utf-8")  # compact: loads the same, smaller
        if getattr(model, "lexical", None) is not None:
            import numpy as np

            with open(tmp / LEXICAL_FILE, "wb") as f:
                np.savez(f, **lexical_table(model.lexical.weight, kind != "fp32"))
        config = {**hf, "format": FORMAT, "version": 1, "labels": list(cfg.labels), "max_length": cfg.max_length,
                  "text_prefix": prefix, "trained_text_prefix": cfg.text_prefix, "hf_layout": bool(hf),
                  "pad_id": int(tokenizer.pad_token_id),
                  "quantization": QUANTIZATIONS[kind], "quantization_form": kind,
                  "parameters": int(sum(p.numel() for p in model.parameters())),
                  "lexical": cfg.lexical,
                  "expert": None if expert is None else {**expert.spec.to_dict(), "weight": 0.0, **(expert_info or {})},
                  "provenance": provenance or {}}
        if expert is not None:
            expert.save(tmp / EXPERT_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False))
    return out
