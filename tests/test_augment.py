"""Transfer-set recipes: deterministic, sized as asked, made only of training words."""
import pytest

from corpus.augment import MASK, RECIPES, TransferSpec, generate
from search.transfer_stage import parse_transfer

POSTS = ["Отличный день сегодня !", "ужасная погода :(", "С днём рождения , Маша !!!", "ок", "а ты где был вчера ?"]


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipes_are_deterministic_and_use_only_training_words(recipe):
    a = generate(POSTS, TransferSpec(recipe, 200, seed=1))
    assert a == generate(POSTS, TransferSpec(recipe, 200, seed=1))
    assert a != generate(POSTS, TransferSpec(recipe, 200, seed=2))
    assert len(a) == 200 and all(t.strip() for t in a)
    words = {w for p in POSTS for w in p.split()} | {MASK}
    assert all(w in words for t in a for w in t.split())
    assert any(t not in POSTS for t in a)


def test_transfer_option_parsing():
    assert parse_transfer("tang:x2", 13, 100) == TransferSpec("tang", 200, 13)
    assert parse_transfer("join:30", 13, 100).size == 30
    with pytest.raises(ValueError, match="unknown transfer recipe 'mixup'"):
        parse_transfer("mixup:10", 13, 100)
    with pytest.raises(ValueError, match="expected RECIPE:SIZE"):
        parse_transfer("tang", 13, 100)
    with pytest.raises(ValueError, match="must be positive"):
        parse_transfer("tang:0", 13, 100)
