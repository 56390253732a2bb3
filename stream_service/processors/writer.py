"""The resonance processor's writer: turns a prompt into text shaped by a writing profile."""

from __future__ import annotations

import hashlib
import random
import re
from typing import Final

from stream_service.messages import Request
from stream_service.processors.profiles import Profile, ProfileRegistry

# Only the head of a long prompt is mined for phrases: it keeps the cost per request bounded
# (prompts may be 32 KiB) and the opening of a prompt usually states its subject.
_PROMPT_HEAD_CHARS: Final = 2_000
_MAX_PHRASES: Final = 4
_MAX_PHRASE_WORDS: Final = 3

_SEGMENT_SPLIT_RE: Final = re.compile(r"[,.;:!?()\[\]{}\"\n/|]+")
_WORD_RE: Final = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_SLOT_RE: Final = re.compile(r"\{(\w+)\}")
_TERMINAL_PUNCTUATION: Final = (".", "!", "?", ":")

# Function words and the words prompts use to ask for writing ("write a short story about"):
# neither names the subject, so neither may become a key phrase.
_STOPWORDS: Final = frozenset(
    """
    a an the and or but nor so yet for of to in on at by with from into onto about above
    below over under after before between through during without within against among
    is are was were be been being am do does did done have has had having can could will
    would shall should may might must i me my mine you your yours he him his she her hers
    it its we us our ours they them their theirs this that these those there here what
    which who whom whose when where why how all any both each few more most other some
    such no not only own same than too very just also as if then else once again ever
    please write describe explain create tell give make generate draft compose summarize
    summarise outline produce provide help need want like using use short long brief
    quick simple new story post article email paragraph tweet summary blog description
    text copy message note essay piece content something things thing way ways lot
    """.split()
)


def key_phrases(prompt: str) -> list[str]:
    """The prompt's subject phrases, longest first then in order of appearance (at most 4).

    A phrase is a run of up to three content words not broken by punctuation. A word keeps
    its case unless it opens a segment (so "Berlin" stays, a capitalised first word does not).
    """
    candidates: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    position = 0
    for segment in _SEGMENT_SPLIT_RE.split(prompt[:_PROMPT_HEAD_CHARS]):
        run: list[str] = []
        words = _WORD_RE.findall(segment)
        for index, word in enumerate([*words, ""]):  # the trailing "" ends the last run
            lowered = word.lower()
            if word and lowered not in _STOPWORDS and (len(word) > 2 or word.isupper()):
                keep_case = index > 0 or word.isupper()
                run.append(word if keep_case else lowered)
                if len(run) < _MAX_PHRASE_WORDS:
                    continue
            if run:
                phrase = " ".join(run)
                if phrase.lower() not in seen:
                    seen.add(phrase.lower())
                    candidates.append((-len(run), position, phrase))
                    position += 1
                run = []
    candidates.sort()
    return [phrase for _, _, phrase in candidates[:_MAX_PHRASES]]


def _seed(prompt: str, profile_name: str) -> int:
    digest = hashlib.blake2b(
        profile_name.encode("utf-8") + b"\x00" + prompt.encode("utf-8", "surrogatepass"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big")


def _sentence(text: str, ending: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith(_TERMINAL_PUNCTUATION) else text + ending


class _Composition:
    """The random choices behind one text: a seeded generator plus the profile's vocabulary."""

    def __init__(self, profile: Profile, prompt: str) -> None:
        self.rng = random.Random(_seed(prompt, profile.name))
        self.profile = profile
        phrases = key_phrases(prompt)
        self.topic = phrases[0] if phrases else profile.vocabulary.fallback_topic
        self.phrases = phrases or [self.topic]
        self._statements = list(profile.vocabulary.statements)
        self._next_statement = len(self._statements)

    def _fill_slot(self, match: re.Match[str]) -> str:
        slot = match.group(1)
        if slot == "topic":
            return self.topic
        if slot == "phrase":
            return self.rng.choice(self.phrases)
        return self.rng.choice(self.profile.vocabulary.slots[slot])

    def fill(self, template: str) -> str:
        return _SLOT_RE.sub(self._fill_slot, template)

    def statement(self) -> str:
        """The next statement template, cycling through a shuffled order so none repeats early."""
        if self._next_statement >= len(self._statements):
            self.rng.shuffle(self._statements)
            self._next_statement = 0
        template = self._statements[self._next_statement]
        self._next_statement += 1
        return template

    def body_sentence(self) -> str:
        style = self.profile.style
        vocabulary = self.profile.vocabulary
        draw = self.rng.random()
        if draw < style.question_rate:
            return _sentence(self.fill(self.rng.choice(vocabulary.questions)), "?")
        ending = "!" if self.rng.random() < style.exclamation_rate else "."
        if draw < style.question_rate + style.fragment_rate:
            return _sentence(self.fill(self.rng.choice(vocabulary.fragments)), ending)
        text = self.fill(self.statement())
        low, high = style.sentence_words
        target_words = self.rng.randint(low, high)
        words = text.count(" ") + 1
        clauses = vocabulary.clauses
        # Lengthen towards the drawn length; at most three clauses so a sentence stays readable.
        for _ in range(3):
            if words >= target_words or not clauses:
                break
            clause = self.fill(self.rng.choice(clauses))
            text = f"{text}, {clause}"
            words += clause.count(" ") + 1
        return _sentence(text, ending)


class HumanResonantWriter:
    """Writes content for a prompt in the style of a named profile.

    Contract: deterministic — the same (prompt, profile) always gives the same text, in every
    process, because the random generator is seeded from a BLAKE2 hash of both (not from
    Python's salted ``hash``). The text opens with a profile opener about the prompt's main
    phrase, continues with body sentences built from the prompt's key phrases and the
    profile's vocabulary, laid out as paragraphs, bullets or both, and ends with a closer.
    Raises ``UnknownProfile`` for a profile the registry does not hold. Thread-safe: all
    per-call state lives in the call.
    """

    def __init__(self, registry: ProfileRegistry) -> None:
        self.registry = registry
        self.profiles: frozenset[str] = registry.names

    def __call__(self, request: Request) -> str:
        return self.write(request.prompt, request.profile_name)

    def write(self, prompt: str, profile_name: str) -> str:
        profile = self.registry.get_profile(profile_name)
        composition = _Composition(profile, prompt)
        rng = composition.rng
        style = profile.style
        vocabulary = profile.vocabulary
        opener = _sentence(composition.fill(rng.choice(vocabulary.openers)), ".")
        body = [composition.body_sentence() for _ in range(rng.randint(*style.body_sentences))]
        closer = _sentence(composition.fill(rng.choice(vocabulary.closers)), ".")
        marker = style.bullet_marker

        if style.structure == "bullets":
            bullets = "\n".join(f"{marker} {sentence}" for sentence in body)
            return f"{opener}\n{bullets}\n\n{closer}"
        if style.structure == "mixed":
            lead_count = min(2, len(body))
            paragraph = " ".join([opener, *body[:lead_count]])
            bullets = "\n".join(f"{marker} {sentence}" for sentence in body[lead_count:])
            return f"{paragraph}\n\n{bullets}\n\n{closer}" if bullets else f"{paragraph}\n\n{closer}"
        sentences = [opener, *body, closer]
        size = style.paragraph_sentences
        paragraphs = [" ".join(sentences[i : i + size]) for i in range(0, len(sentences), size)]
        return "\n\n".join(paragraphs)
