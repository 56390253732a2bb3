"""The resonance processor: the writer's style per profile, determinism, and its HRV fit."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys

import pytest

from stream_service.errors import UnknownProfile
from stream_service.messages import Request
from stream_service.processors.hrv import HRVExtractor
from stream_service.processors.profiles import ProfileRegistry
from stream_service.processors.writer import HumanResonantWriter, key_phrases

PROMPTS = [
    "Write a product description for a smart water bottle that tracks hydration",
    "Explain how our new payroll system handles overtime",
    "Tell a story about a lighthouse keeper who collects lost letters",
    "Announce the launch of a budget travel app for students",
    "Summarize the quarterly results of the retail division",
    "Describe a cloud backup service for small law firms",
    "A short post about community gardens in Berlin",
    "Introduce an electric cargo bike for city deliveries",
    "Explain the benefits of remote onboarding for engineers",
    "Write about a bakery that opens at midnight",
    "Pitch a machine learning tool that detects invoice fraud",
    "Describe the renovation plan for the public library",
    "Promote a weekend cooking class for beginners",
    "Write a note about the new password policy",
    "A tale of two rival beekeepers in a mountain village",
    "Present a data pipeline that cleans sensor readings",
    "Draft a message welcoming new members to the chess club",
    "Explain why the office heating schedule is changing",
    "Announce a summer sale on hiking boots",
    "Describe an open source library for parsing calendars",
    "Write a story about a robot learning to paint",
    "Outline the safety procedures for the chemistry lab",
    "Pitch a subscription box of rare teas",
    "Explain how the hospital reduced waiting times",
    "Describe a mobile game about rebuilding a flooded city",
    "Introduce a monitoring service for wind turbines",
    "Write about the history of the old harbour market",
    "Promote a yoga retreat by the sea",
    "Summarize the feedback from the customer survey",
    "Describe an API for real-time currency conversion",
    "Tell the story of a fox who guards a forgotten orchard",
    "Explain the new expense reporting workflow",
    "Announce a partnership between two coffee roasters",
    "Describe a platform that schedules hospital shifts",
    "Write about a train journey across frozen plains",
    "Promote noise cancelling headphones for students",
    "Outline the migration plan to the new email server",
    "Pitch a startup that recycles old smartphones",
    "Describe a festival of lanterns on the river",
    "Explain how solar panels are installed on apartment roofs",
    "Write a welcome note for the spring photography workshop",
    "Introduce a browser extension that blocks distracting sites",
    "Tell a story about a clockmaker and a stubborn cat",
    "Summarize the audit findings for the finance team",
    "Announce free delivery on organic vegetable boxes",
    "Describe a tool that translates legacy COBOL code",
    "Write about a violin found in an attic",
    "Explain the updated parental leave policy",
    "Promote a language learning podcast",
    "Describe a vector database for product search",
]

BUILTIN_PROFILES = ("creative_storytelling", "marketing_enthusiastic", "neutral_professional", "tech_startup")


@pytest.fixture(scope="module")
def registry() -> ProfileRegistry:
    return ProfileRegistry()


@pytest.fixture(scope="module")
def writer(registry: ProfileRegistry) -> HumanResonantWriter:
    return HumanResonantWriter(registry)


@pytest.fixture(scope="module")
def vectors(writer: HumanResonantWriter) -> dict[str, list[list[float]]]:
    extract = HRVExtractor()
    return {name: [extract(writer.write(prompt, name)) for prompt in PROMPTS] for name in BUILTIN_PROFILES}


def test_prompt_list_is_about_fifty_distinct_prompts() -> None:
    """The fit test below averages over ~50 different prompts."""
    assert len(set(PROMPTS)) == len(PROMPTS) >= 50


@pytest.mark.parametrize("profile", BUILTIN_PROFILES)
def test_content_is_closest_on_average_to_its_own_profile_target(
    profile: str, registry: ProfileRegistry, vectors: dict[str, list[list[float]]]
) -> None:
    """Text written in a profile is, on average over the prompts, nearer its target than any other."""
    mean_distance = {
        name: statistics.fmean(math.dist(vector, registry[name].target_hrv) for vector in vectors[profile])
        for name in BUILTIN_PROFILES
    }
    nearest = min(mean_distance, key=mean_distance.__getitem__)
    assert nearest == profile, mean_distance


@pytest.mark.parametrize("profile", BUILTIN_PROFILES)
def test_most_single_texts_are_nearest_their_own_target(
    profile: str, registry: ProfileRegistry, vectors: dict[str, list[list[float]]]
) -> None:
    """Not just the average: at least 90% of individual texts are nearest their own profile's target."""
    nearest = [
        min(BUILTIN_PROFILES, key=lambda name: math.dist(vector, registry[name].target_hrv))
        for vector in vectors[profile]
    ]
    assert nearest.count(profile) >= 0.9 * len(nearest)


def test_profiles_produce_different_text(writer: HumanResonantWriter) -> None:
    """Every profile writes a different text for the same prompt."""
    texts = {writer.write(PROMPTS[0], name) for name in BUILTIN_PROFILES}
    assert len(texts) == len(BUILTIN_PROFILES)


def test_writing_is_deterministic(writer: HumanResonantWriter, registry: ProfileRegistry) -> None:
    """The same prompt and profile give the same text, from this writer or a fresh one."""
    again = HumanResonantWriter(registry)
    for name in BUILTIN_PROFILES:
        assert (
            writer.write(PROMPTS[3], name) == writer.write(PROMPTS[3], name) == again.write(PROMPTS[3], name)
        )


def test_writing_is_deterministic_across_processes_with_different_hash_seeds(
    writer: HumanResonantWriter,
) -> None:
    """Output does not depend on Python's per-process string hash salt (PYTHONHASHSEED)."""
    code = (
        "from stream_service.processors.profiles import ProfileRegistry\n"
        "from stream_service.processors.writer import HumanResonantWriter\n"
        "writer = HumanResonantWriter(ProfileRegistry())\n"
        f"print(writer.write({PROMPTS[5]!r}, 'creative_storytelling'), end='')"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout == writer.write(PROMPTS[5], "creative_storytelling")


def test_different_prompts_give_different_text(writer: HumanResonantWriter) -> None:
    """The prompt shapes the text: fifty prompts give fifty texts."""
    assert len({writer.write(prompt, "tech_startup") for prompt in PROMPTS}) == len(PROMPTS)


def test_text_mentions_the_prompt_subject(writer: HumanResonantWriter) -> None:
    """The main key phrase of the prompt appears in the text of every profile."""
    for name in BUILTIN_PROFILES:
        assert "smart water bottle" in writer.write(PROMPTS[0], name).lower()


@pytest.mark.parametrize(
    ("profile", "bullet_lines", "exclamations"),
    [
        pytest.param("neutral_professional", False, False, id="neutral: paragraphs, no exclamations"),
        pytest.param("tech_startup", True, None, id="tech: bullet list"),
        pytest.param("marketing_enthusiastic", True, True, id="marketing: bullets and exclamations"),
        pytest.param("creative_storytelling", False, None, id="creative: paragraphs"),
    ],
)
def test_structure_follows_profile_style(
    writer: HumanResonantWriter, profile: str, bullet_lines: bool, exclamations: bool | None
) -> None:
    """Bullets, paragraphs and exclamation marks appear as each profile's style prescribes."""
    texts = [writer.write(prompt, profile) for prompt in PROMPTS[:10]]
    marker = ProfileRegistry()[profile].style.bullet_marker
    has_bullets = any(line.startswith(marker + " ") for text in texts for line in text.splitlines())
    assert has_bullets is bullet_lines
    if exclamations is not None:
        assert any("!" in text for text in texts) is exclamations


def test_empty_prompt_uses_fallback_topic(writer: HumanResonantWriter, registry: ProfileRegistry) -> None:
    """A prompt without content words is written about the profile's fallback topic."""
    text = writer.write("please write about it", "tech_startup")
    assert registry["tech_startup"].vocabulary.fallback_topic in text


def test_unknown_profile_raises_profile_error(writer: HumanResonantWriter) -> None:
    """An unknown profile_name is an UnknownProfile error (error_type profile) naming the known ones."""
    with pytest.raises(UnknownProfile, match="known profiles: creative_storytelling") as caught:
        writer(Request(id="1", prompt="hi", profile_name="pirate"))
    assert caught.value.error_type == "profile"


def test_writer_is_a_request_callable(writer: HumanResonantWriter) -> None:
    """Called with a Request, the writer writes its prompt in its profile."""
    request = Request(id="1", prompt=PROMPTS[1], profile_name="marketing_enthusiastic")
    assert writer(request) == writer.write(PROMPTS[1], "marketing_enthusiastic")


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        pytest.param(
            "Write a product description for a smart water bottle that tracks hydration",
            ["smart water bottle", "tracks hydration", "product"],
            id="instruction words dropped, longest first",
        ),
        pytest.param(
            "A short post about community gardens in Berlin", ["community gardens", "Berlin"], id="case kept"
        ),
        pytest.param("please write it", [], id="nothing left"),
        pytest.param(
            "Kafka, latency; throughput", ["kafka", "latency", "throughput"], id="punctuation splits"
        ),
    ],
)
def test_key_phrases(prompt: str, expected: list[str]) -> None:
    """Key phrases are runs of content words, longest first, at most four."""
    assert key_phrases(prompt) == expected


def test_huge_prompt_is_bounded(writer: HumanResonantWriter) -> None:
    """A 32 KiB prompt is written quickly: only its head is mined for phrases."""
    text = writer.write("gardens " * 4000, "neutral_professional")
    assert "gardens" in text
    assert len(text) < 5_000
