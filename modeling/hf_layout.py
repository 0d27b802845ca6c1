"""The Hugging Face layout of an exported folder, beside the runtime's own files: ``config.json``
also carries the encoder's transformers config (``model_type``, ``id2label``/``label2id``, sizes) and
``tokenizer_config.json`` names the fast tokenizer, so Optimum's
``ORTModelForSequenceClassification.from_pretrained(folder)`` and a transformers
``pipeline("text-classification")`` load it. The text prefix a student was trained with (e5's
``"query: "``) is baked into ``tokenizer.json``'s template, so every loader feeds the same ids;
the runtime then adds no prefix of its own (``text_prefix`` is empty in such a folder).

A student with a lexical branch is not given the layout: its n-gram features are computed outside
the ONNX graph, which Optimum cannot feed, so Optimum's labels would differ from the runtime's."""
from __future__ import annotations

import json

PROBES = ("Привет", "Отличный день!", "x", "123 ok")  # texts whose ids must not change when the prefix is baked


def bake_prefix(tokenizer_json: str, prefix: str) -> str | None:
    """``tokenizer_json`` with ``prefix``'s pieces inserted after the leading special token of its
    template (single and pair), or None when that cannot reproduce ``prefix + text`` exactly (not a
    TemplateProcessing post-processor, or the prefix's pieces depend on the text that follows)."""
    from tokenizers import Tokenizer

    if not prefix:
        return tokenizer_json
    spec = json.loads(tokenizer_json)
    post = spec.get("post_processor") or {}
    if post.get("type") != "TemplateProcessing" or "SpecialToken" not in post["single"][0]:
        return None
    tok = Tokenizer.from_str(tokenizer_json)
    tok.no_truncation()
    full = tok.encode(prefix + PROBES[0], add_special_tokens=False)
    alone = tok.encode(PROBES[0], add_special_tokens=False)
    n = len(full.ids) - len(alone.ids)
    if n <= 0 or full.ids[n:] != alone.ids:
        return None
    pieces = list(zip(full.tokens[:n], full.ids[:n]))
    names = [f"[prefix {i}]" for i in range(n)]  # template names must not clash with real special tokens
    inserted = [{"SpecialToken": {"id": name, "type_id": 0}} for name in names]
    post["single"] = post["single"][:1] + inserted + post["single"][1:]
    if post.get("pair"):
        post["pair"] = post["pair"][:1] + inserted + post["pair"][1:]
    for name, (token, id_) in zip(names, pieces):
        post["special_tokens"][name] = {"id": name, "ids": [id_], "tokens": [token]}
    baked = json.dumps(spec, ensure_ascii=False)
    check = Tokenizer.from_str(baked)
    check.no_truncation()
    for text in PROBES:  # the baked template gives exactly the ids of prefix + text
        if check.encode(text).ids != tok.encode(prefix + text).ids:
            return None
    return baked


def hf_config(encoder_config, labels: list[str]) -> dict:
    """The transformers keys of ``config.json``: the encoder's config as a sequence classifier."""
    keep = {k: v for k, v in encoder_config.to_dict().items()
            if k not in ("architectures", "id2label", "label2id", "transformers_version", "_name_or_path")}
    return {**keep, "architectures": [f"{type(encoder_config).__name__.removesuffix('Config')}ForSequenceClassification"],
            "id2label": {str(i): label for i, label in enumerate(labels)},
            "label2id": {label: i for i, label in enumerate(labels)}}


def tokenizer_config(tokenizer, max_length: int) -> dict:
    """``tokenizer_config.json`` for ``AutoTokenizer``: the fast tokenizer in ``tokenizer.json``."""
    specials = {k: getattr(tokenizer, k) for k in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                                                   "cls_token", "mask_token") if getattr(tokenizer, k, None)}
    return {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length, "padding_side": "right",
            "truncation_side": "right", **{k: str(v) for k, v in specials.items()}}
