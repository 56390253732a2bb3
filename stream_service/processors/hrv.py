"""The HRV extractor: eight style measurements of a text, each in [0, 1].

=====  ====================  ===============================================================
dim    name                  what raises it
=====  ====================  ===============================================================
0      valence               positive words over negative ones; 0.5 when there are neither
1      arousal               exclamation marks, intensifiers ("very"), ALL-CAPS words,
                             high-energy words ("urgent", "incredible")
2      warmth                personal address: you/your, we/our/us, greetings, "together"
3      clarity               short sentences of short words (Flesch reading ease / 100)
4      rhythm                variation of sentence lengths (their coefficient of variation)
5      richness              vocabulary variety: moving-average type-token ratio (MATTR)
6      concreteness          share of concrete, sensory words (colours, objects, sounds)
7      engagement            questions, imperatives ("try", "imagine"), calls to action
=====  ====================  ===============================================================

Rates are per word or per sentence, so length alone moves no dimension much; unbounded rates
are squashed with ``1 - exp(-k * rate)``, which is 0 at 0 and approaches 1. The lexicons live
in :mod:`stream_service.processors.lexicon`. The extractor is pure Python, deterministic and
stateless; it is safe to share between threads.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Final

from stream_service.messages import HRV_DIMENSIONS
from stream_service.processors import lexicon

DIMENSION_NAMES: Final[tuple[str, ...]] = (
    "valence",
    "arousal",
    "warmth",
    "clarity",
    "rhythm",
    "richness",
    "concreteness",
    "engagement",
)
assert len(DIMENSION_NAMES) == HRV_DIMENSIONS

# A word is a run of letters, optionally joined by apostrophes ("don't", "we're"); digits and
# punctuation are not words.
_WORD_RE: Final = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
# A sentence runs up to and including its . ! ? marks, or up to a line break (a bullet is a
# sentence). A decimal point also ends one; the error is small and this split is cheap.
_SENTENCE_RE: Final = re.compile(r"[^.!?\n]+[.!?]*")
# ALL-CAPS words of two or more letters ("NOW", "FREE"); a capital in a mixed word is not one.
_CAPS_WORD_RE: Final = re.compile(r"\b[A-ZÀ-ÖØ-Þ]{2,}\b")
_VOWEL_GROUP_RE: Final = re.compile(r"[aeiouy]+")
_CALL_TO_ACTION_RE: Final = re.compile(
    r"\b(?:" + "|".join(re.escape(p) for p in lexicon.CALL_TO_ACTION_PHRASES) + r")\b"
)

_MATTR_WINDOW_WORDS: Final = 50
# Gains of the 1 - exp(-k * rate) squashing, chosen so typical prose lands mid-range.
_AROUSAL_EXCLAMATION_GAIN: Final = 1.2  # per exclamation mark per sentence
_AROUSAL_INTENSIFIER_GAIN: Final = 4.0  # per intensifier per word
_AROUSAL_CAPS_GAIN: Final = 3.0  # per ALL-CAPS word per word
_AROUSAL_WORD_GAIN: Final = 6.0  # per high-energy word per word
_WARMTH_GAIN: Final = 12.0  # per personal-address word per word
_CONCRETE_GAIN: Final = 10.0  # per concrete word per word
_QUESTION_GAIN: Final = 1.5  # per question per sentence
_IMPERATIVE_GAIN: Final = 1.5  # per imperative sentence per sentence
_CALL_TO_ACTION_GAIN: Final = 1.0  # per call-to-action phrase per sentence
_VALENCE_SMOOTHING: Final = 2.0  # pseudo-count that pulls sparse sentiment towards neutral

EMPTY_TEXT_VECTOR: Final[tuple[float, ...]] = (0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _squash(rate: float) -> float:
    return 1.0 - math.exp(-rate)


def _clamp(value: float) -> float:
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


@functools.lru_cache(maxsize=32_768)
def _syllables(word: str) -> int:
    """Estimate syllables from vowel groups, discounting a silent final 'e' (lower-case input)."""
    groups = len(_VOWEL_GROUP_RE.findall(word))
    if groups > 1 and word.endswith("e") and not word.endswith(("le", "ee", "ye")):
        groups -= 1
    return max(groups, 1)


def _mattr(tokens: Sequence[str], window: int) -> float:
    """Moving-average type-token ratio: mean distinct share over every ``window``-word span.

    Computed in one pass: a token adds one distinct type to every window that contains it
    but not its previous occurrence, so no window is materialised.
    """
    n = len(tokens)
    if n == 0:
        return 0.0
    if n <= window:
        return len(set(tokens)) / n
    last_start = n - window
    previous: dict[str, int] = {}
    distinct_total = 0
    for j, token in enumerate(tokens):
        first_start = j - window + 1
        after_previous = previous.get(token, -1) + 1
        if after_previous > first_start:
            first_start = after_previous
        previous[token] = j
        span = (j if j < last_start else last_start) - first_start + 1
        if span > 0:
            distinct_total += span
    return distinct_total / ((last_start + 1) * window)


class HRVExtractor:
    """Maps any text to an 8-float style vector, every value in [0, 1] (see the module table).

    Guarantees: total (never raises on any ``str``), deterministic, independent of the order in
    which texts are scored, and rounded to 4 decimals. Text without a single word maps to
    :data:`EMPTY_TEXT_VECTOR` (neutral valence, everything else 0).
    """

    __slots__ = ()

    dimensions: Final[tuple[str, ...]] = DIMENSION_NAMES

    def __call__(self, text: str) -> list[float]:
        return self.extract(text)

    def extract(self, text: str) -> list[float]:
        text = text.replace("\u2019", "'")
        lowered = text.lower()
        sentences: list[list[str]] = []
        terminals: list[str] = []
        for chunk in _SENTENCE_RE.findall(lowered):
            words = _WORD_RE.findall(chunk)
            if words:
                sentences.append(words)
                terminals.append(chunk[-1])
        if not sentences:
            return list(EMPTY_TEXT_VECTOR)

        words = [word for sentence in sentences for word in sentence]
        n_words = len(words)
        n_sentences = len(sentences)
        lengths = [len(sentence) for sentence in sentences]

        counts = Counter(words)
        vocabulary = counts.keys()

        def occurrences(lexicon_words: frozenset[str]) -> int:
            return sum(counts[word] for word in vocabulary & lexicon_words)

        positive = occurrences(lexicon.POSITIVE)
        negative = occurrences(lexicon.NEGATIVE)
        intensifiers = occurrences(lexicon.INTENSIFIERS)
        energetic = occurrences(lexicon.HIGH_AROUSAL)
        warm = occurrences(lexicon.WARM_ADDRESS)
        concrete = occurrences(lexicon.CONCRETE)
        caps = len(_CAPS_WORD_RE.findall(text))

        valence = 0.5 + 0.5 * (positive - negative) / (positive + negative + _VALENCE_SMOOTHING)
        arousal = _squash(
            _AROUSAL_EXCLAMATION_GAIN * text.count("!") / n_sentences
            + (
                _AROUSAL_INTENSIFIER_GAIN * intensifiers
                + _AROUSAL_CAPS_GAIN * caps
                + _AROUSAL_WORD_GAIN * energetic
            )
            / n_words
        )
        warmth = _squash(_WARMTH_GAIN * warm / n_words)

        syllables = sum(_syllables(word) * count for word, count in counts.items())
        flesch = 206.835 - 1.015 * (n_words / n_sentences) - 84.6 * (syllables / n_words)
        clarity = _clamp(flesch / 100.0)

        rhythm = 0.0
        if n_sentences > 1:
            mean = n_words / n_sentences
            variance = sum((length - mean) ** 2 for length in lengths) / n_sentences
            rhythm = min(math.sqrt(variance) / mean, 1.0)

        richness = _mattr(words, _MATTR_WINDOW_WORDS)
        concreteness = _squash(_CONCRETE_GAIN * concrete / n_words)

        questions = terminals.count("?")
        imperatives = sum(1 for sentence in sentences if sentence[0] in lexicon.IMPERATIVE_VERBS)
        calls_to_action = len(_CALL_TO_ACTION_RE.findall(lowered))
        engagement = _squash(
            (
                _QUESTION_GAIN * questions
                + _IMPERATIVE_GAIN * imperatives
                + _CALL_TO_ACTION_GAIN * calls_to_action
            )
            / n_sentences
        )

        vector = (valence, arousal, warmth, clarity, rhythm, richness, concreteness, engagement)
        return [round(_clamp(value), 4) for value in vector]
