"""Tiny offline fixtures built in code: a RuSentiment-shaped data set and a rubert-tiny2-shaped BERT."""
from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

from corpus.rusentiment import FILES, LABELS

WORDS = {
    "negative": ["ужасно", "плохо", "грустно", "ненавижу", "отвратительно", "злой", "обидно", "кошмар"],
    "neutral": ["сегодня", "завтра", "поеду", "город", "работа", "встреча", "новости", "фото"],
    "positive": ["отлично", "люблю", "счастье", "прекрасно", "класс", "радость", "ура", "супер"],
    "skip": ["http", "vk", "com", "repost", "ссылка", "конкурс", "подписка", "реклама"],
    "speech": ["поздравляю", "спасибо", "днем", "рождения", "с", "праздником", "желаю", "благодарю"],
}
FILLER = ["и", "я", "мы", "это", "все", "там", "вот", "ну", "😀", "!!!"]


def tiny_texts(label: str, n: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(n):
        words = rng.choices(WORDS[label], k=rng.randint(2, 5)) + rng.choices(FILLER, k=rng.randint(0, 3))
        rng.shuffle(words)
        out.append(" ".join(words).capitalize())
    return out


def write_tiny_rusentiment(root: Path, per_class: int = 40, seed: int = 0) -> Path:
    """Three CSVs with RuSentiment's names and columns (``label,text``), separable by word choice."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for key, (name, _) in FILES.items():
        n = per_class if key == "random" else max(8, per_class // 3)
        rows = [(label, text) for label in LABELS for text in tiny_texts(label, n, rng)]
        rng.shuffle(rows)
        with open(root / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, quoting=csv.QUOTE_MINIMAL)
            w.writerow(["label", "text"])
            w.writerows(rows)
    return root


def write_tiny_bert(out: Path, texts: list[str]) -> Path:
    """A random BERT in rubert-tiny2's shape (312 hidden, 3 layers, 12 heads, FFN 600) with a
    WordPiece tokenizer over ``texts``, saved with ``save_pretrained``. The vocabulary is built here, in a fixed
    order (special tokens, characters, ``##`` characters, then words by count and spelling), not by the
    tokenizers library's WordPiece trainer, whose vocabulary changes from process to process (it breaks ties in a
    hash map's order): with it, every session had another "pretrained" model and seeded searches could not repeat."""
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(w for t in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(t)))
    chars = sorted({c for w in words for c in w})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = specials + chars + ["##" + c for c in chars]
    vocab += [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1][:max(0, 600 - len(vocab))]
    tok = Tokenizer(models.WordPiece({v: i for i, v in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=2048)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=312, num_hidden_layers=3,
                        num_attention_heads=12, intermediate_size=600, max_position_embeddings=2048,
                        pad_token_id=tok.token_to_id("[PAD]"))
    torch.manual_seed(0)  # the same "pretrained" weights in every session: seeded searches repeat exactly
    BertModel(config).save_pretrained(out)
    fast.save_pretrained(out)
    return out


def with_teacher(teacher_experiment: Path, storage: Path, name: str) -> Path:
    """``storage/name`` started as a copy of the session's tiny teacher experiment (``tiny_teacher``): a run there
    with the same ``--teacher``, data and seed reuses the teacher. A copy, not hard links: some tests damage their
    experiment's files on purpose."""
    dest = storage / name
    storage.mkdir(parents=True, exist_ok=True)
    shutil.copytree(teacher_experiment, dest, ignore=shutil.ignore_patterns("teacher_trials", "run.json"))
    return dest
