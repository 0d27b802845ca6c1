"""Known answers for what the Pareto review rests on (``search/pareto.py``, ``analysis/export.py:choose_trial``):
the trivial-trial rule, the front with ties, the choice rule with limits and ties, the limits as the report says
them, the plot's log ticks, the TF-IDF baseline's cross-validated C."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from search.pareto import CHOICE_RULE, TRIVIAL, choose, limits_text, mark_trivial, pareto_front, trivial_weighted_f1

COLUMNS = ["trial_id", "status", "int8_val_weighted_f1", "e2e_ms_p50", "size_mib"]


def _trials(rows, trivial=None):
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df if trivial is None else df.assign(**{TRIVIAL: trivial})


def test_trivial_bar_is_the_better_of_majority_and_prior():
    # 80/20: majority wF1 = .8 * (2 * .8 / 1.8) = .7111; prior sum p^2 = .68 -> the majority's
    assert trivial_weighted_f1([0] * 8 + [1] * 2) == pytest.approx(0.8 * 1.6 / 1.8)
    # 50/50: majority .5 * (1 / 1.5) = .3333; prior .5 -> the prior's
    assert trivial_weighted_f1(["a", "b"] * 5) == pytest.approx(0.5)
    # the majority figure is sklearn's weighted F1 of predicting the majority class everywhere
    from sklearn.metrics import f1_score

    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    majority = f1_score(y, np.zeros_like(y), average="weighted", zero_division=0)
    assert trivial_weighted_f1(y) == pytest.approx(max(majority, 0.49 + 0.04 + 0.01))
    with pytest.raises(ValueError, match="no validation labels"):
        trivial_weighted_f1([])


def test_mark_trivial_marks_at_or_below_the_bar_only():
    labels = [0] * 8 + [1] * 2  # bar .7111
    bar = trivial_weighted_f1(labels)
    df = _trials([("at", "completed", bar, 0.1, 1.0), ("below", "completed", 0.5, 0.1, 1.0),
                  ("above", "completed", bar + 0.001, 0.2, 1.0), ("none", "stopped_early", np.nan, np.nan, np.nan)])
    marked, got = mark_trivial(df, labels)
    assert got == pytest.approx(bar)
    assert dict(zip(marked.trial_id, marked[TRIVIAL])) == {"at": True, "below": True, "above": False, "none": False}


def test_mark_trivial_without_an_int8_figure_marks_nothing():
    df = pd.DataFrame({"trial_id": ["a", "b"], "status": ["completed", "error"]})  # no int8 column at all
    marked, _ = mark_trivial(df, [0, 1, 1])
    assert marked[TRIVIAL].tolist() == [False, False]
    odd = pd.DataFrame({"trial_id": ["a", "b"], "int8_val_weighted_f1": ["n/a", "0.1"]})  # a table read as text
    assert mark_trivial(odd, [0, 1, 1])[0][TRIVIAL].tolist() == [False, True]


def test_candidates_keep_unmarked_rows_and_tables_without_status_or_ids():
    df = _trials([("a", "completed", 0.70, 1.0, 4.0), ("b", "completed", 0.65, 0.5, 3.0)],
                 trivial=[np.nan, False])  # a row the rule has not marked is not trivial
    assert sorted(pareto_front(df).trial_id) == ["a", "b"]
    bare = df.drop(columns=["status", "trial_id", TRIVIAL])  # e.g. a study's table
    assert len(pareto_front(bare)) == 2 and choose(bare).iloc[0].int8_val_weighted_f1 == 0.70


def test_trivial_trials_never_enter_the_front_even_when_fastest():
    df = _trials([("majority", "completed", 0.636, 0.12, 1.0),   # fastest and smallest, but trivial
                  ("real", "completed", 0.702, 0.60, 3.0)], trivial=[True, False])
    assert list(pareto_front(df).trial_id) == ["real"]
    assert list(pareto_front(df.drop(columns=TRIVIAL)).trial_id) == ["majority", "real"]  # a table without the rule


def test_front_with_ties_on_one_objective():
    df = _trials([
        ("a", "completed", 0.70, 1.0, 4.0),
        ("b", "completed", 0.70, 1.0, 5.0),   # ties a on F1 and latency, larger: dominated
        ("c", "completed", 0.70, 0.8, 6.0),   # ties a on F1, faster, larger: kept
        ("d", "completed", 0.68, 0.8, 6.0),   # ties c on latency and size, less accurate: dominated
        ("e", "completed", 0.70, 1.0, 4.0),   # equal to a on all three: both kept
    ])
    front = pareto_front(df.iloc[::-1])  # whatever the table's order
    assert list(front.trial_id) == ["c", "a", "e"]  # by latency, then trial id


def test_choose_applies_limits_and_breaks_ties_by_latency_size_then_id():
    df = _trials([
        ("slow", "completed", 0.75, 2.0, 4.0),
        ("big", "completed", 0.72, 0.5, 6.0),
        ("t2", "completed", 0.72, 0.5, 3.0),
        ("t1", "completed", 0.72, 0.5, 3.0),
        ("fast", "completed", 0.72, 0.4, 3.5),
        ("tiny", "completed", 0.60, 0.3, 1.0),
        ("triv", "completed", 0.80, 0.1, 0.5),
    ], trivial=[False] * 6 + [True])
    assert choose(df).iloc[0].trial_id == "slow"  # the trivial one is never chosen, however good it looks
    assert list(choose(df, max_latency_ms=1.0).trial_id[:4]) == ["fast", "t1", "t2", "big"]  # F1 tie: latency, size, id
    assert choose(df, max_latency_ms=1.0, max_size_mib=3.2).iloc[0].trial_id == "t1"
    assert choose(df, max_latency_ms=0.5, max_size_mib=3.0).iloc[0].trial_id == "t1"  # limits are inclusive
    assert choose(df, max_size_mib=1.0).iloc[0].trial_id == "tiny"
    assert choose(df, max_latency_ms=0.2).empty  # none fits (the trivial one at 0.1 ms does not count)


def test_choose_breaks_validation_ties_by_fidelity_and_only_within_the_noise():
    """n=1,000 validation posts, best .70: one standard error is sqrt(.7 * .3 / 1000) = .01449. Members within it
    are ordered by fidelity; one just outside it is not lifted by its higher fidelity; without n_val or without a
    fidelity column the rule is the plain one."""
    from search.pareto import validation_noise

    assert validation_noise(0.7, 1000) == pytest.approx(0.014491, abs=1e-6)
    df = _trials([("best", "completed", 0.700, 0.5, 3.0), ("close", "completed", 0.690, 0.6, 3.0),
                  ("edge", "completed", 0.700 - 0.014491, 0.4, 3.0), ("far", "completed", 0.684, 0.3, 3.0)])
    df["fidelity_agreement"] = [0.80, 0.86, 0.84, 0.95]
    assert choose(df, n_val=1000).trial_id.tolist() == ["close", "edge", "best", "far"]
    assert choose(df).trial_id.tolist() == ["best", "close", "edge", "far"]  # no n_val: CHOICE_RULE
    assert choose(df.drop(columns="fidelity_agreement"), n_val=1000).trial_id.tolist() == ["best", "close", "edge",
                                                                                         "far"]
    nan = df.assign(fidelity_agreement=[np.nan, 0.86, np.nan, 0.95])  # a member without a figure ranks last of its tie
    assert choose(nan, n_val=1000).trial_id.tolist() == ["close", "best", "edge", "far"]
    assert choose(df, max_latency_ms=0.55, n_val=1000).trial_id.tolist() == ["edge", "best", "far"]
    with pytest.raises(ValueError, match="n_val"):
        validation_noise(0.7, 0)


def test_choose_trial_reads_the_front_and_says_when_nothing_fits(tmp_path):
    from analysis.export import ExportError, choose_trial
    from search.experiment import Experiment

    df = _trials([("a", "completed", 0.70, 1.0, 4.0), ("b", "completed", 0.66, 0.5, 3.0),
                  ("m", "completed", 0.60, 0.1, 1.0)], trivial=[False, False, True]).assign(
        model_dir=["students/a", "students/b", "students/m"])
    df.to_csv(Experiment(tmp_path).table(), index=False)
    pareto_front(df).to_csv(Experiment(tmp_path).front, index=False)
    assert choose_trial(tmp_path, None, None, None)["trial_id"] == "a"
    assert choose_trial(tmp_path, None, 0.9, None)["trial_id"] == "b"
    assert choose_trial(tmp_path, "m", None, None)["trial_id"] == "m"  # --trial: the user's call, with a warning
    with pytest.raises(ExportError, match=r"latency 0\.2 ms end to end, size no limit"):
        choose_trial(tmp_path, None, 0.2, None)
    # a table from before the end-to-end objective: one clear error, not a KeyError
    df.drop(columns="e2e_ms_p50").to_csv(Experiment(tmp_path).front, index=False)
    with pytest.raises(ExportError, match=r"pareto.csv: the trials table has no e2e_ms_p50 column"):
        choose_trial(tmp_path, None, None, None)


def test_limits_text_says_no_limit_not_none():
    assert limits_text(None, None) == "latency no limit, size no limit"
    assert limits_text(0.5, 5) == "latency 0.5 ms end to end, size 5 MiB"
    assert "trivial" in CHOICE_RULE and "faster end to end" in CHOICE_RULE


def test_log_ticks_are_plain_numbers_spanning_the_points():
    from analysis.interactive import log_ticks

    assert log_ticks([0.35, 0.82, 2.1, 23.5]) == [0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0]
    assert log_ticks([]) == []


def test_cross_validated_c_is_bracketed_by_the_grid():
    """On separable texts larger C keeps winning: the grid widens upwards until the best C is inside it or the
    widenings run out; on noisy texts the best C is inside the starting grid."""
    from analysis.baseline import C_GRID, MAX_WIDENINGS, cross_validate_c

    rng = np.random.default_rng(0)
    words = [f"слово{i}" for i in range(40)]
    texts, labels = [], []
    for i in range(240):
        y = int(i % 3 == 0)  # 1 in 3 positive: a C too small predicts the majority everywhere
        texts.append(" ".join(rng.choice(words[y * 20:(y + 1) * 20], 2)) + " " + " ".join(rng.choice(words, 4)))
        labels.append(y if rng.random() > 0.15 else 1 - y)
    low = cross_validate_c(texts, np.array(labels), grid=(0.001, 0.003), folds=3)
    assert list(low["scores"]) == pytest.approx([0.001, 0.003, 0.009, 0.027, 0.081])  # widened upwards 3 times
    assert low["best"] == pytest.approx(0.081) and not low["bracketed"]  # and says the optimum is not bracketed
    assert low["scores"][0.001] == low["scores"][0.003]  # the flat underfitting start that made it look higher
    cv = cross_validate_c(texts, np.array(labels), grid=C_GRID, folds=3)
    assert list(cv["scores"]) == list(C_GRID) and cv["bracketed"] and cv["best"] == 0.3
    assert cv["scores"][0.3] == max(cv["scores"].values())
    assert C_GRID[0] < 0.3 < C_GRID[-1] and MAX_WIDENINGS == 3
