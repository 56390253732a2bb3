"""Writing profiles: TOML data files describing a style, loaded and validated once at startup.

A profile is ``<name>.toml`` in ``stream_service/processors/profiles/`` (built in) or in the
directory named by ``processor.profiles_dir``, whose files are loaded after the built-in ones
and so add profiles or replace built-ins of the same name. The file format is documented in
``docs/processors.md``; :class:`Profile` is its schema.
"""

from __future__ import annotations

import importlib.resources
import re
import tomllib
from collections.abc import Iterator, Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec

from stream_service.errors import ConfigError, UnknownProfile
from stream_service.messages import HrvVector

_BUILTIN_PACKAGE: Final = "stream_service.processors"
_BUILTIN_DIR: Final = "profiles"
_PROFILE_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SLOT_RE: Final = re.compile(r"\{(\w+)\}")
# Slots every template may use without the profile defining them: filled from the prompt.
PROMPT_SLOTS: Final = frozenset({"topic", "phrase"})

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Count = Annotated[int, msgspec.Meta(ge=1, le=200)]
Range = tuple[Count, Count]
Templates = Annotated[list[Annotated[str, msgspec.Meta(min_length=1)]], msgspec.Meta(min_length=1)]


class Style(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The shape of generated text. Ranges are ``[low, high]`` inclusive."""

    structure: Literal["paragraphs", "bullets", "mixed"] = "paragraphs"
    body_sentences: Range = (4, 6)
    sentence_words: Range = (10, 18)  # a statement is padded with clauses towards a length drawn here
    paragraph_sentences: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3
    exclamation_rate: Rate = 0.0  # share of statements ending in "!"
    question_rate: Rate = 0.0  # share of body sentences drawn from ``questions``
    fragment_rate: Rate = 0.0  # share of body sentences drawn from ``fragments`` (never padded)
    bullet_marker: str = "-"


class Vocabulary(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Templates and the word lists their ``{slot}`` placeholders draw from."""

    openers: Templates
    statements: Templates
    closers: Templates
    questions: list[str] = []
    fragments: list[str] = []
    clauses: list[str] = []  # appended (", " + clause) to lengthen a statement
    fallback_topic: str = "this idea"  # used when the prompt has no content words
    slots: dict[str, Templates] = {}


class Profile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One validated profile; ``name`` is the file name without ``.toml``."""

    name: str = ""
    description: str
    system_prompt: str  # sent as the system message by the http processor
    target_hrv: HrvVector  # the style vector text written in this profile should score near
    style: Style = Style()
    vocabulary: Vocabulary


class ProfileRegistry(Mapping[str, Profile]):
    """Every profile the processors accept, by name; read-only after construction.

    Rejects at construction (``ConfigError`` naming the file and the problem): a missing
    ``profiles_dir``, unreadable or invalid TOML, a field of the wrong type or out of range, a
    file name that is not a lower-case identifier, a ``name`` field that differs from the file
    name, ``low > high`` in a range, a template using a slot the profile does not define, and
    an empty result. :meth:`get_profile` raises ``UnknownProfile`` for a name it does not hold.
    """

    def __init__(self, profiles_dir: str | Path | None = None) -> None:
        profiles: dict[str, Profile] = {}
        builtin = importlib.resources.files(_BUILTIN_PACKAGE).joinpath(_BUILTIN_DIR)
        for source in _toml_files(builtin):
            profile = _load(source)
            profiles[profile.name] = profile
        if profiles_dir is not None:
            directory = Path(profiles_dir)
            if not directory.is_dir():
                raise ConfigError(
                    f"processor.profiles_dir: {str(directory)!r} is not a directory; "
                    "point it at a directory of <name>.toml profile files"
                )
            for source in _toml_files(directory):
                profile = _load(source)
                profiles[profile.name] = profile
        if not profiles:
            raise ConfigError("no writing profiles found; add <name>.toml files to processor.profiles_dir")
        self._profiles = profiles
        self.names: frozenset[str] = frozenset(profiles)

    def get_profile(self, name: str) -> Profile:
        try:
            return self._profiles[name]
        except KeyError:
            known = ", ".join(sorted(self._profiles))
            raise UnknownProfile(f"unknown profile_name {name!r}; known profiles: {known}") from None

    def __getitem__(self, name: str) -> Profile:
        return self._profiles[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._profiles)

    def __len__(self) -> int:
        return len(self._profiles)


def _toml_files(directory: Traversable) -> list[Traversable]:
    return sorted(
        (f for f in directory.iterdir() if f.name.endswith(".toml") and f.is_file()), key=lambda f: f.name
    )


def _load(source: Traversable) -> Profile:
    name = source.name.removesuffix(".toml")
    where = f"profile file {source.name!r}"
    if not _PROFILE_NAME_RE.match(name):
        raise ConfigError(f"{where}: the file name must be a lower-case identifier like 'tech_startup.toml'")
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read it as TOML: {exc}") from exc
    if data.setdefault("name", name) != name:
        raise ConfigError(f"{where}: name = {data['name']!r} differs from the file name; remove it or rename")
    try:
        profile = msgspec.convert(data, Profile)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    _check(profile, where)
    return profile


def _check(profile: Profile, where: str) -> None:
    style = profile.style
    for field in ("body_sentences", "sentence_words"):
        low, high = getattr(style, field)
        if low > high:
            raise ConfigError(f"{where}: style.{field} = [{low}, {high}] has low > high")
    vocabulary = profile.vocabulary
    if style.question_rate and not vocabulary.questions:
        raise ConfigError(f"{where}: style.question_rate > 0 needs vocabulary.questions")
    if style.fragment_rate and not vocabulary.fragments:
        raise ConfigError(f"{where}: style.fragment_rate > 0 needs vocabulary.fragments")
    known = PROMPT_SLOTS | vocabulary.slots.keys()
    for group in ("openers", "statements", "closers", "questions", "fragments", "clauses"):
        for template in getattr(vocabulary, group):
            for slot in _SLOT_RE.findall(template):
                if slot not in known:
                    raise ConfigError(
                        f"{where}: vocabulary.{group} template {template!r} uses {{{slot}}}, "
                        f"which is neither topic, phrase nor a key of vocabulary.slots"
                    )
