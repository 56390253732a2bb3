"""The profile registry: built-in profiles, profiles_dir overrides, and validation of profile files."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_service.errors import ConfigError, UnknownProfile
from stream_service.messages import HRV_DIMENSIONS
from stream_service.processors.profiles import ProfileRegistry
from stream_service.processors.writer import HumanResonantWriter

MINIMAL = """
description = "A test profile."
system_prompt = "Be brief."
target_hrv = [0.5, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]

[vocabulary]
openers = ["About {topic}"]
statements = ["{topic} is {quality}"]
closers = ["That is all"]

[vocabulary.slots]
quality = ["fine", "good"]
"""


def write_profile(directory: Path, name: str, text: str = MINIMAL) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_builtin_profiles_are_loaded() -> None:
    """The four documented profiles ship with the package, each with an 8-value target."""
    registry = ProfileRegistry()
    assert {
        "neutral_professional",
        "creative_storytelling",
        "marketing_enthusiastic",
        "tech_startup",
    } <= registry.names
    for profile in registry.values():
        assert len(profile.target_hrv) == HRV_DIMENSIONS
        assert profile.system_prompt


def test_profiles_dir_adds_profiles(tmp_path: Path) -> None:
    """A profile in profiles_dir is available next to the built-in ones."""
    write_profile(tmp_path, "terse")
    registry = ProfileRegistry(tmp_path)
    assert "terse" in registry.names and "tech_startup" in registry.names
    assert registry.get_profile("terse").vocabulary.slots["quality"] == ["fine", "good"]


def test_profiles_dir_overrides_builtin(tmp_path: Path) -> None:
    """A file named like a built-in profile replaces it."""
    write_profile(tmp_path, "tech_startup")
    assert ProfileRegistry(tmp_path)["tech_startup"].system_prompt == "Be brief."


def test_unknown_profile_error() -> None:
    """get_profile raises UnknownProfile (error_type profile) naming the profile."""
    with pytest.raises(UnknownProfile, match="'nope'") as caught:
        ProfileRegistry().get_profile("nope")
    assert caught.value.error_type == "profile"


def test_missing_profiles_dir_is_a_config_error(tmp_path: Path) -> None:
    """A profiles_dir that does not exist is rejected, naming the setting."""
    with pytest.raises(ConfigError, match="processor.profiles_dir"):
        ProfileRegistry(tmp_path / "absent")


@pytest.mark.parametrize(
    ("file_name", "text", "message"),
    [
        pytest.param("broken", "description = ", "cannot read it as TOML", id="invalid TOML"),
        pytest.param(
            "short",
            MINIMAL.replace("0.6, 0.7]", "0.6]"),
            "target_hrv",
            id="target_hrv with 7 values",
        ),
        pytest.param("range", MINIMAL.replace("0.7]", "1.7]"), "target_hrv", id="target_hrv value above 1"),
        pytest.param(
            "renamed", 'name = "other"\n' + MINIMAL, "differs from the file name", id="name differs from file"
        ),
        pytest.param(
            "slots",
            MINIMAL.replace("{quality}", "{mood}"),
            "uses {mood}",
            id="template uses an undefined slot",
        ),
        pytest.param(
            "lowhigh",
            MINIMAL + "\n[style]\nbody_sentences = [5, 2]\n",
            "low > high",
            id="range low above high",
        ),
        pytest.param("extra", "colour = 'red'\n" + MINIMAL, "colour", id="unknown field"),
        pytest.param("Bad-Name", MINIMAL, "lower-case identifier", id="file name not an identifier"),
        pytest.param(
            "questions",
            MINIMAL + "\n[style]\nquestion_rate = 0.5\n",
            "vocabulary.questions",
            id="question rate without questions",
        ),
    ],
)
def test_invalid_profile_file_is_rejected_naming_the_file(
    tmp_path: Path, file_name: str, text: str, message: str
) -> None:
    """Every invalid profile file fails loading with a ConfigError naming the file and the problem."""
    write_profile(tmp_path, file_name, text)
    with pytest.raises(ConfigError, match=message) as caught:
        ProfileRegistry(tmp_path)
    assert f"{file_name}.toml" in str(caught.value)


def test_non_toml_files_are_ignored(tmp_path: Path) -> None:
    """Only *.toml files in profiles_dir are profiles (a README next to them is fine)."""
    (tmp_path / "README.md").write_text("notes", encoding="utf-8")
    assert ProfileRegistry(tmp_path).names == ProfileRegistry().names


def test_documented_example_profile_is_valid(tmp_path: Path) -> None:
    """The support_reply.toml example in docs/processors.md loads and writes text."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "processors.md").read_text(encoding="utf-8")
    start = docs.index("# /etc/stream-service/profiles/support_reply.toml")
    example = docs[start : docs.index("```", start)]
    write_profile(tmp_path, "support_reply", example)
    registry = ProfileRegistry(tmp_path)
    text = HumanResonantWriter(registry).write("my order never arrived", "support_reply")
    assert text.startswith("Thanks for asking about")
