"""The HRV extractor: every dimension moves in its documented direction and stays in [0, 1]."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_service.messages import HRV_DIMENSIONS
from stream_service.processors.hrv import DIMENSION_NAMES, EMPTY_TEXT_VECTOR, HRVExtractor, _mattr

extract = HRVExtractor()

DRY_SPEC = (
    "The service reads records from the input topic. Each record is decoded and validated. "
    "Invalid records are written to the errors topic. Offsets are committed after publication."
)
MARKETING = (
    "Meet the AMAZING new bottle! It is incredibly light and really stunning! "
    "Order NOW and get FREE shipping! This is absolutely the best deal ever!"
)


@pytest.mark.parametrize(
    ("dimension", "higher", "lower"),
    [
        pytest.param(
            "valence",
            "What a wonderful, happy day. The team loved the brilliant results and felt proud.",
            "What an awful, sad day. The team hated the terrible results and felt angry.",
            id="valence: praise above complaint",
        ),
        pytest.param("arousal", MARKETING, DRY_SPEC, id="arousal: exclamatory marketing above a dry spec"),
        pytest.param(
            "warmth",
            "Hello friends! We made this for you, and we hope your family enjoys our work together.",
            "The component was produced for the customer and the documentation describes its use.",
            id="warmth: you/we above impersonal",
        ),
        pytest.param(
            "clarity",
            "The cat sat on the mat. It was warm. The sun was out. We had tea.",
            "Organisational implementation necessitates comprehensive consideration of "
            "interdepartmental administrative responsibilities and regulatory obligations.",
            id="clarity: short plain words above long latinate sentence",
        ),
        pytest.param(
            "rhythm",
            "Stop. The long road wound through the hills for hours and hours before anyone spoke. "
            "Then rain. Everyone ran for the old barn at the edge of the field as thunder rolled.",
            "The road went up the hill today. The rain came down on us all. "
            "The barn stood by the old field. The wind blew from the cold sea.",
            id="rhythm: mixed sentence lengths above uniform ones",
        ),
        pytest.param(
            "richness",
            "Amber lanterns swayed above crooked cobblestones while distant violins mourned forgotten "
            "harbours, salt-stained sailors bartered copper trinkets, and gulls wheeled overhead.",
            "The thing is the thing and the thing is good, the thing is the thing and the thing is "
            "good, the thing is the thing and the thing is good.",
            id="richness: varied vocabulary above repetition",
        ),
        pytest.param(
            "concreteness",
            "Rain on the window, the smell of coffee and warm bread, golden light across the wooden table.",
            "The strategy concerns alignment of objectives, governance principles and policy frameworks.",
            id="concreteness: sensory images above abstractions",
        ),
        pytest.param(
            "engagement",
            "Ready to start? Why wait? Try it today and sign up now. What will you build first?",
            "The system was installed in March. It has operated without interruption since then.",
            id="engagement: questions and calls to action above plain statements",
        ),
    ],
)
def test_dimension_moves_in_documented_direction(dimension: str, higher: str, lower: str) -> None:
    """Each dimension scores the text with more of its feature above the contrasting text."""
    index = DIMENSION_NAMES.index(dimension)
    assert extract(higher)[index] > extract(lower)[index]


def test_valence_is_neutral_without_sentiment_words() -> None:
    """A text with no positive or negative words has valence exactly 0.5."""
    assert extract("The train leaves the station at nine.")[0] == 0.5


@pytest.mark.parametrize(
    "text", [pytest.param("", id="empty"), pytest.param("  ... 42 !? \n", id="no words")]
)
def test_text_without_words_maps_to_empty_vector(text: str) -> None:
    """Text with no words gets the documented neutral vector rather than failing."""
    assert extract(text) == list(EMPTY_TEXT_VECTOR)


def test_extraction_is_deterministic_and_rounded() -> None:
    """The same text always gives the same 8 values, rounded to 4 decimals."""
    first = extract(MARKETING)
    assert first == extract(MARKETING) == HRVExtractor().extract(MARKETING)
    assert len(first) == HRV_DIMENSIONS
    assert all(round(value, 4) == value for value in first)


def test_typographic_apostrophe_is_folded() -> None:
    """A curly apostrophe counts like a straight one ("you’re" is personal address)."""
    assert extract("you\u2019re here")[2] == extract("you're here")[2]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_every_dimension_is_in_unit_interval_for_any_text(text: str) -> None:
    """Arbitrary text (any unicode, any punctuation) maps to 8 values in [0, 1]."""
    vector = extract(text)
    assert len(vector) == HRV_DIMENSIONS
    assert all(0.0 <= value <= 1.0 for value in vector)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from("abcdefg"), max_size=120),
    st.integers(min_value=1, max_value=60),
)
def test_mattr_matches_brute_force_windows(tokens: list[str], window: int) -> None:
    """The one-pass MATTR equals the mean type-token ratio over every explicit window."""
    n = len(tokens)
    if n == 0:
        expected = 0.0
    elif n <= window:
        expected = len(set(tokens)) / n
    else:
        expected = sum(len(set(tokens[i : i + window])) for i in range(n - window + 1)) / (
            (n - window + 1) * window
        )
    assert _mattr(tokens, window) == pytest.approx(expected)
