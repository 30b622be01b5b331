"""VADER sentiment scores, the same as `vaderSentiment` 3.3.2 gives, at less cost, over several processes.

`FastVader.polarity_scores` returns exactly what `SentimentIntensityAnalyzer.polarity_scores` returns (a test
compares them on thousands of texts built from the lexicon, boosters, negations, idioms, emoji, capitals and
punctuation). It follows VADER's rules step for step and spends less on what the original repeats:
- the text is translated emoji by emoji only when it holds one (a set test); otherwise the translation is
  the text itself;
- every token is lower-cased once per text, where VADER lower-cases the whole token list again for each
  negation and idiom check of each lexicon word (quadratic in the tweet's length);
- a token that is neither in the lexicon nor a booster contributes 0 without a method call, as in VADER, and
  a text without a lexicon word (one set test) gets the scores VADER's arithmetic gives all-zero sentiments;
- the contrastive "but" rule (VADER's own method, kept for its quirks) runs only when "but" is a token.
VADER's own methods do the rest (`score_valence`, `_but_check`, `scalar_inc_dec`, `allcap_differential`).

`score_texts` scores a list of texts in order, in this process, or, from `PARALLEL_AT` texts on, in
chunks over a pool of processes (VADER is pure Python: threads would take turns on the GIL).
"""

from __future__ import annotations

import multiprocessing
import os
import string
from concurrent.futures import ProcessPoolExecutor

from vaderSentiment import vaderSentiment as vader

# Below this many texts one process scores them: a pool costs about 0.1 s to start and feed, which
# buys nothing for a few thousand tweets (about 5-30 µs each in this process).
PARALLEL_AT = 20_000
CHUNK = 5_000  # texts per task sent to a worker: small enough to spread the work, large enough to pay the pickling
Scores = tuple[float, float, float, float]  # neg, neu, pos, compound, rounded as VADER rounds them

_NEGATE = frozenset(vader.NEGATE)
_PUNCTUATION = string.punctuation


def _negated(word: str) -> bool:
    """`vader.negated([word])`: one word, "n't" included."""
    word = word.lower()
    return word in _NEGATE or "n't" in word


class FastVader(vader.SentimentIntensityAnalyzer):
    """`SentimentIntensityAnalyzer` with the same scores, computed with less repeated work (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        # VADER translates a text character by character, so only one-character emoji keys ever match.
        self._emoji = frozenset(k for k in self.emojis if len(k) == 1)
        # True for VADER 3.3.2's lexicon (its first emoji is U+00A9): then an ASCII text holds none.
        self._no_ascii_emoji = not any(k.isascii() for k in self._emoji)

    def polarity_scores(self, text: str) -> dict[str, float]:
        if not (self._no_ascii_emoji and text.isascii()) and not self._emoji.isdisjoint(text):
            text = self._translate_emoji(text)
        text = text.strip()
        # vader.SentiText: split on whitespace, strip punctuation around a word unless that leaves 2 characters
        # or fewer (an emoticon).
        words = [token if len(stripped := token.strip(_PUNCTUATION)) <= 2 else stripped for token in text.split()]
        lower = [w.lower() for w in words]
        lexicon = self.lexicon
        if lexicon.keys().isdisjoint(lower):
            # No lexicon word: every token's sentiment is 0, so VADER's sums are 0 and each token counts as
            # neutral (score_valence: compound 0.0, neu 1.0; no token at all: every score 0.0).
            return {"neg": 0.0, "neu": 1.0 if words else 0.0, "pos": 0.0, "compound": 0.0}
        is_cap_diff = vader.allcap_differential(words)
        boosters = vader.BOOSTER_DICT
        last = len(words) - 1
        sentiments: list[float] = []
        for i, item in enumerate(lower):
            if item in boosters or (i < last and item == "kind" and lower[i + 1] == "of") or item not in lexicon:
                sentiments.append(0)
            else:
                sentiments.append(self._valence(words, lower, i, is_cap_diff))
        if "but" in lower:
            sentiments = self._but_check(words, sentiments)
        return self.score_valence(sentiments, text)

    def _translate_emoji(self, text: str) -> str:
        """VADER's loop: each emoji becomes its description, after a space unless one precedes it."""
        out = []
        prev_space = True
        for char in text:
            if char in self.emojis:
                if not prev_space:
                    out.append(" ")
                out.append(self.emojis[char])
                prev_space = False
            else:
                out.append(char)
                prev_space = char == " "
        return "".join(out)

    def _valence(self, words: list[str], lower: list[str], i: int, is_cap_diff: bool) -> float:
        """`sentiment_valence` of the lexicon word at `i`, with its negation, idiom and "least" checks."""
        lexicon = self.lexicon
        item, item_lower = words[i], lower[i]
        valence = lexicon[item_lower]
        if item_lower == "no" and i != len(words) - 1 and lower[i + 1] in lexicon:
            valence = 0.0
        if ((i > 0 and lower[i - 1] == "no") or (i > 1 and lower[i - 2] == "no")
                or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ("or", "nor"))):
            valence = lexicon[item_lower] * vader.N_SCALAR
        if item.isupper() and is_cap_diff:
            if valence > 0:
                valence += vader.C_INCR
            else:
                valence -= vader.C_INCR
        for start_i in range(3):
            if i > start_i and lower[i - (start_i + 1)] not in lexicon:
                s = vader.scalar_inc_dec(words[i - (start_i + 1)], valence, is_cap_diff)
                if start_i == 1 and s != 0:
                    s = s * 0.95
                if start_i == 2 and s != 0:
                    s = s * 0.9
                valence = valence + s
                valence = self._negation(valence, lower, start_i, i)
                if start_i == 2:
                    valence = self._idioms(valence, lower, i)
        # _least_check
        if i > 1 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
            if lower[i - 2] != "at" and lower[i - 2] != "very":
                valence = valence * vader.N_SCALAR
        elif i > 0 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
            valence = valence * vader.N_SCALAR
        return valence

    @staticmethod
    def _negation(valence: float, lower: list[str], start_i: int, i: int) -> float:
        """VADER's `_negation_check` on the lower-cased tokens."""
        if start_i == 0 and _negated(lower[i - (start_i + 1)]):
            valence = valence * vader.N_SCALAR
        if start_i == 1:
            if lower[i - 2] == "never" and (lower[i - 1] == "so" or lower[i - 1] == "this"):
                valence = valence * 1.25
            elif lower[i - 2] == "without" and lower[i - 1] == "doubt":
                pass
            elif _negated(lower[i - (start_i + 1)]):
                valence = valence * vader.N_SCALAR
        if start_i == 2:
            if (lower[i - 3] == "never" and (lower[i - 2] == "so" or lower[i - 2] == "this")
                    or (lower[i - 1] == "so" or lower[i - 1] == "this")):
                valence = valence * 1.25
            elif lower[i - 3] == "without" and (lower[i - 2] == "doubt" or lower[i - 1] == "doubt"):
                pass
            elif _negated(lower[i - (start_i + 1)]):
                valence = valence * vader.N_SCALAR
        return valence

    @staticmethod
    def _idioms(valence: float, lower: list[str], i: int) -> float:
        """VADER's `_special_idioms_check` on the lower-cased tokens."""
        special, boosters = vader.SPECIAL_CASES, vader.BOOSTER_DICT
        onezero = f"{lower[i - 1]} {lower[i]}"
        twoonezero = f"{lower[i - 2]} {lower[i - 1]} {lower[i]}"
        twoone = f"{lower[i - 2]} {lower[i - 1]}"
        threetwoone = f"{lower[i - 3]} {lower[i - 2]} {lower[i - 1]}"
        threetwo = f"{lower[i - 3]} {lower[i - 2]}"
        for seq in (onezero, twoonezero, twoone, threetwoone, threetwo):
            if seq in special:
                valence = special[seq]
                break
        if len(lower) - 1 > i:
            zeroone = f"{lower[i]} {lower[i + 1]}"
            if zeroone in special:
                valence = special[zeroone]
        if len(lower) - 1 > i + 1:
            zeroonetwo = f"{lower[i]} {lower[i + 1]} {lower[i + 2]}"
            if zeroonetwo in special:
                valence = special[zeroonetwo]
        for n_gram in (threetwoone, threetwo, twoone):
            if n_gram in boosters:
                valence = valence + boosters[n_gram]
        return valence


_ANALYZER: FastVader | None = None


def _analyzer() -> FastVader:
    """One analyzer per process (its lexicon takes a few ms to read); it holds no state between texts."""
    global _ANALYZER
    if _ANALYZER is None:
        _ANALYZER = FastVader()
    return _ANALYZER


def _score_chunk(texts: list[str]) -> list[Scores]:
    analyzer = _analyzer()
    out = []
    for text in texts:
        s = analyzer.polarity_scores(text)
        out.append((s["neg"], s["neu"], s["pos"], s["compound"]))
    return out


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _pool_context() -> multiprocessing.context.BaseContext:
    """fork where there is one: a worker then starts in milliseconds with the lexicon already read. Under
    forkserver or spawn each worker imports the parent's main module again (the flow, Prefect, polars), which
    took longer than the scoring of 40,000 tweets. A forked worker runs only `_score_chunk` (pure Python, no
    thread, no lock of the parent's), which is the case fork is safe for."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else methods[0])


def score_texts(texts: list[str], workers: int | None = None, parallel_at: int = PARALLEL_AT) -> list[Scores]:
    """VADER's (neg, neu, pos, compound) for each text, in the order given.

    From `parallel_at` texts on, chunks of `CHUNK` texts go to `workers` processes (default: the cores this
    process may use); results come back in order, so the scores do not depend on the number of workers."""
    workers = workers or available_cores()
    if workers <= 1 or len(texts) < max(parallel_at, 2):
        return _score_chunk(texts)
    _analyzer()  # read the lexicon once, before the fork: every worker inherits it
    chunk = min(CHUNK, -(-len(texts) // workers))
    chunks = [texts[i:i + chunk] for i in range(0, len(texts), chunk)]
    with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=_pool_context()) as pool:
        return [scores for part in pool.map(_score_chunk, chunks) for scores in part]
