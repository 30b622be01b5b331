"""`FastVader` gives exactly vaderSentiment's scores; `score_texts` gives them in order from any number of processes."""

from __future__ import annotations

import random
from datetime import date

import pytest
from vaderSentiment.vaderSentiment import BOOSTER_DICT, NEGATE, SPECIAL_CASES, SentimentIntensityAnalyzer

from tasks.analytics import sentiment
from tasks.analytics.sentiment import FastVader, score_texts
from tasks.sources.sample import generate_pages

REFERENCE = SentimentIntensityAnalyzer()
# Words that steer VADER's rules: "but", "least", "no", "kind of", "never so", "without doubt", "or"/"nor".
RULE_WORDS = ("but", "least", "at", "very", "no", "kind", "of", "sort", "never", "so", "this", "without", "doubt",
              "or", "nor", "the", "a", "is", "not", "isn't", "data", "pipeline")
EDGE_TEXTS = ("", " ", "\n", "but", "BUT good", "no", "no good", "not bad at all", "kind of good", "at least good",
              "the least good", "never so good", "without doubt good", "😀", "good😀bad", " 😀 😀 ", ":) :-( :D",
              "GOOD day", "GOOD DAY", "good!!!!!", "good???", "bad??", "the shit", "the bomb is great", "yeah right",
              "kiss of death", "sort of good", "good but bad", "bad but good but great", "©®", "Ünïcödé good 東京")


def random_texts(n: int, seed: int) -> list[str]:
    """Texts built from VADER's own lexicon, boosters, negations, idioms and emoji, with capitals, punctuation
    and the words its rules look for: every rule of `polarity_scores` is met many times."""
    rng = random.Random(seed)
    lexicon = sorted(REFERENCE.lexicon)
    emoji = sorted(k for k in REFERENCE.emojis if len(k) == 1)
    pools = (lexicon, sorted(BOOSTER_DICT), NEGATE, sorted(SPECIAL_CASES), emoji, RULE_WORDS)
    weights = (15, 7, 5, 3, 3, 67)
    texts = []
    for _ in range(n):
        words = []
        for _ in range(rng.randint(0, 30)):
            word = rng.choice(rng.choices(pools, weights)[0])
            if rng.random() < 0.1:
                word = word.upper()
            if rng.random() < 0.1:
                word += rng.choice((",", ".", "!", "?", "!!", "?!?", "...", ":)", "'"))
            words.append(word)
        texts.append(rng.choice((" ", " ", "  ", "\n", "")).join(words))
    return texts


def test_fast_vader_gives_vaders_scores() -> None:
    fast = FastVader()
    sample = [t["text"] for page in generate_pages(date(2026, 11, 24), "#DataEng", 300, page_size=100)
              for t in page.get("data", [])]
    texts = [*EDGE_TEXTS, *random_texts(5000, seed=1), *sample]
    different = [t for t in texts if fast.polarity_scores(t) != REFERENCE.polarity_scores(t)]
    assert different == []
    # The texts reach the rules: most carry a sentiment, and every label occurs.
    compounds = [fast.polarity_scores(t)["compound"] for t in texts]
    assert sum(c > 0.05 for c in compounds) > 1000 and sum(c < -0.05 for c in compounds) > 1000


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_scores_come_back_in_order_whatever_the_workers(workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = random_texts(1000, seed=2)
    expected = [tuple(REFERENCE.polarity_scores(t)[k] for k in ("neg", "neu", "pos", "compound")) for t in texts]
    monkeypatch.setattr(sentiment, "CHUNK", 64)  # many chunks, so an out-of-order one would show
    assert score_texts(texts, workers=workers, parallel_at=10) == expected
    assert score_texts([], workers=workers, parallel_at=0) == []
