"""Transfer sets for distillation: new, unlabelled posts made from the *training* posts only.

The teacher labels them (soft outputs, cached once per set, see ``search/transfer_stage.py``);
the student learns the teacher's function on far more text than the ~25k labelled posts
(Tang et al. 2019, "Distilling task-specific knowledge from BERT into simple neural networks";
TinyBERT's data augmentation). Recipes, at the word level (whitespace tokens, so emoji and
punctuation attached to words travel with them):

| recipe | what one generated post is |
|---|---|
| ``tang`` | each word, with p=0.1, masked (``<mask>``) or, with p=0.1, replaced by a word drawn from the training word distribution; then, with p=0.25, an n-gram window (n = 1-5 words) of the result |
| ``span`` | a random contiguous span of 1/3 to all of one post's words |
| ``join`` | a leading fragment of one post joined to a trailing fragment of another |

Each recipe is deterministic given its seed.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

RECIPES = ("tang", "span", "join")
# real text, not generated (corpus.transfer_text): "real" samples --transfer-texts (the first pool: news, forums,
# VK-style posts), "broad" samples --broad-texts (reviews, tweets, comments, dialogue)
REAL = ("real", "broad")
SOURCES = RECIPES + REAL
MASK = "<mask>"


@dataclass(frozen=True)
class TransferSpec:
    recipe: str
    size: int          # number of generated posts
    seed: int = 13

    def __post_init__(self):
        if self.recipe not in SOURCES:
            raise ValueError(f"unknown transfer recipe {self.recipe!r}; choose one of {', '.join(SOURCES)}")
        if self.size <= 0:
            raise ValueError(f"transfer set size must be positive, got {self.size}")

    @property
    def name(self) -> str:
        return f"{self.recipe}-{self.size}-s{self.seed}"


def _tang(words: list[str], rng, vocab: np.ndarray, cdf: np.ndarray) -> list[str]:
    out = []
    for w in words:
        u = rng.random()
        out.append(MASK if u < 0.1 else str(vocab[min(int(np.searchsorted(cdf, rng.random())), len(vocab) - 1)]) if u < 0.2 else w)
    if len(out) > 1 and rng.random() < 0.25:
        n = int(rng.integers(1, min(5, len(out)) + 1))
        start = int(rng.integers(0, len(out) - n + 1))
        out = out[start:start + n]
    return out


def _span(words: list[str], rng) -> list[str]:
    n = int(rng.integers(max(1, len(words) // 3), len(words) + 1))
    start = int(rng.integers(0, len(words) - n + 1))
    return words[start:start + n]


def _join(a: list[str], b: list[str], rng) -> list[str]:
    head = a[: int(rng.integers(1, len(a) + 1))]
    tail = b[int(rng.integers(0, len(b))):]
    return head + tail


def generate(texts: list[str], spec: TransferSpec) -> list[str]:
    """``spec.size`` new posts from ``texts`` (the training posts; never pass test posts)."""
    if spec.recipe not in RECIPES:
        raise ValueError(f"transfer recipe {spec.recipe!r} is not generated from posts; "
                         f"see corpus.transfer_text for 'real'")
    rng = np.random.default_rng(spec.seed)
    posts = [t.split() for t in texts]
    posts = [p for p in posts if p]
    if not posts:
        raise ValueError("cannot build a transfer set: every training post is empty")
    vocab = cdf = None
    if spec.recipe == "tang":
        counts = Counter(w for p in posts for w in p)
        vocab = np.array(list(counts))
        cdf = np.cumsum(np.array(list(counts.values()), dtype=float))
        cdf /= cdf[-1]
    out = []
    picks = rng.integers(0, len(posts), size=(spec.size, 2))
    for i, j in picks:
        if spec.recipe == "tang":
            words = _tang(posts[i], rng, vocab, cdf)
        elif spec.recipe == "span":
            words = _span(posts[i], rng)
        else:
            words = _join(posts[i], posts[j], rng)
        out.append(" ".join(words) or posts[i][0])
    return out
