import numpy as np
import torch

from corpus import encode_texts
from modeling.vocab import choose_kept_ids, piece_counts, remap_ids, trim_embeddings, trim_tokenizer

TEXTS = ["Привет, как дела? 😀", "ужасно плохо", "С днём рождения!!!", "отлично, люблю это"]


def _check_trim(model_dir, prefix=""):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    full = encode_texts(TEXTS, tok, 64, prefix)
    keep = choose_kept_ids(piece_counts(full, len(tok)), tok)
    small_tok = trim_tokenizer(tok, keep)
    old_rows = model.get_input_embeddings().weight.detach().clone()
    trim_embeddings(model, keep)
    assert len(small_tok) == len(keep) == model.config.vocab_size
    trimmed = encode_texts(TEXTS, small_tok, 64, prefix)
    # same segmentation, ids renumbered, embedding rows moved with them
    assert np.array_equal(trimmed.ids, remap_ids(full, keep, small_tok.unk_token_id).ids)
    assert np.array_equal(keep[trimmed.ids], full.ids)
    assert torch.equal(model.get_input_embeddings().weight[trimmed.ids[:5]], old_rows[full.ids[:5]])
    return small_tok, trimmed


def test_trim_unigram_e5(e5_dir):
    small, trimmed = _check_trim(e5_dir, "query: ")
    assert small.decode(trimmed.row(0), skip_special_tokens=True).strip() == "query: " + TEXTS[0]
    # text with pieces outside the kept set still tokenises (re-segmented or <unk>), never fails
    assert len(small("совершенно новые слова xyz")["input_ids"]) > 2


def test_trim_wordpiece_bert(tiny_bert):
    _check_trim(tiny_bert)


def test_frequency_cap_keeps_specials(e5_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(e5_dir)
    counts = piece_counts(encode_texts(TEXTS, tok, 64), len(tok))
    keep = choose_kept_ids(counts, tok, max_pieces=10)
    assert len(keep) == 10 and set(tok.all_special_ids) <= set(keep.tolist())
