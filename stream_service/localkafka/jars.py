"""Resolve the Apache Kafka broker jars with Maven once per version and reuse them afterwards.

Layout of the cache (outside the repository, shared by every checkout)::

    $STREAM_SERVICE_KAFKA_CACHE    (default $XDG_CACHE_HOME/stream-service, else ~/.cache/stream-service)
      kafka-4.1.1/
        lib/             the runtime classpath (java -cp 'lib/*')
        lib/.complete    marker written last: without it the copy is treated as unfinished and redone
        .lock            serialises concurrent fetches (two pytest sessions, the setup script)

A warm cache never calls Maven, so it needs no network and no ``mvn``; ``java`` is still needed to run.

This is developer tooling, not the service: ``config.py`` is the only module that reads the environment
for the *service* configuration, while the launcher's own knobs (cache directory, Kafka version,
``JAVA_HOME``) are read here, in :class:`Toolchain.from_env` and :func:`cache_root`, and nowhere else.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_KAFKA_VERSION = "4.1.1"
CACHE_ENV = "STREAM_SERVICE_KAFKA_CACHE"
VERSION_ENV = "STREAM_SERVICE_KAFKA_VERSION"
# The broker's Maven coordinates ship inside the package, so an installed stream-service can fetch
# them from any directory (``pip install stream-service && stream-service kafka start``).
POM_PATH = Path(__file__).resolve().with_name("pom.xml")

_MARKER_NAME = ".complete"
_MIN_JAVA_MAJOR = 17
_MAVEN_TIMEOUT_S = 600.0
_JAVA_PROBE_TIMEOUT_S = 30.0
_JAVA_VERSION_RE = re.compile(r'version "(\d+)(?:\.(\d+))?')


class LocalKafkaError(RuntimeError):
    """The local broker tooling cannot do what was asked; the message says what to install or fix."""


@dataclass(frozen=True)
class JavaRuntime:
    """A checked ``java`` executable and what ``java -version`` said about it."""

    path: str
    major: int
    version_text: str

    @property
    def fingerprint(self) -> str:
        """Short id of this exact JVM build: a class-data archive only loads into the JVM that wrote it."""
        ident = f"{os.path.realpath(self.path)}\n{self.version_text}".encode()
        return hashlib.sha256(ident).hexdigest()[:12]


@dataclass(frozen=True)
class Toolchain:
    """Where ``java`` and ``mvn`` are; ``None`` means not found on this machine."""

    java: str | None
    mvn: str | None

    @classmethod
    def from_env(cls) -> Toolchain:
        """Prefer ``$JAVA_HOME/bin/java`` (what Maven uses too), else ``java`` on ``PATH``."""
        java: str | None = None
        java_home = os.environ.get("JAVA_HOME")
        if java_home and (Path(java_home) / "bin" / "java").is_file():
            java = str(Path(java_home) / "bin" / "java")
        return cls(java=java or shutil.which("java"), mvn=shutil.which("mvn"))

    def require_java(self) -> JavaRuntime:
        """Return the java executable after checking it is version 17 or newer."""
        if self.java is None:
            raise LocalKafkaError(
                f"java not found: install a JDK {_MIN_JAVA_MAJOR}+ "
                "(e.g. apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
            )
        proc = subprocess.run(
            [self.java, "-version"],
            capture_output=True,
            text=True,
            timeout=_JAVA_PROBE_TIMEOUT_S,
            check=False,
        )
        text = (proc.stderr + proc.stdout).strip()
        major = parse_java_major(text)
        if major < _MIN_JAVA_MAJOR:
            raise LocalKafkaError(
                f"{self.java} is Java {major}; the Kafka broker needs Java {_MIN_JAVA_MAJOR} or newer "
                "(set JAVA_HOME to a newer JDK)"
            )
        return JavaRuntime(path=self.java, major=major, version_text=text)

    def require_mvn(self) -> str:
        if self.mvn is None:
            raise LocalKafkaError(
                "mvn not found: it is needed once to download the Kafka jars (apt-get install maven); "
                "afterwards the cache is used without it"
            )
        return self.mvn


def parse_java_major(version_output: str) -> int:
    """Read the major version from ``java -version`` output (``"1.8.0_392"`` is 8, ``"17.0.15"`` is 17)."""
    match = _JAVA_VERSION_RE.search(version_output)
    if match is None:
        raise LocalKafkaError(f"cannot read the Java version from: {version_output.strip()[:200]!r}")
    first = int(match.group(1))
    if first == 1 and match.group(2) is not None:
        return int(match.group(2))
    return first


def default_version() -> str:
    return os.environ.get(VERSION_ENV) or DEFAULT_KAFKA_VERSION


def cache_root() -> Path:
    """``$STREAM_SERVICE_KAFKA_CACHE``, else ``$XDG_CACHE_HOME/stream-service``, else ``~/.cache/...``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "stream-service"


def lib_dir(version: str | None = None) -> Path:
    return cache_root() / f"kafka-{version or default_version()}" / "lib"


def class_archive_path(lib: Path, java: JavaRuntime) -> Path:
    """Where the broker's class-data-sharing archive for this lib directory and JVM lives.

    The archive (written by the first broker that stops gracefully) halves JVM start-up time; it sits
    beside ``lib/`` so it goes away with the jars it was made from.
    """
    return lib.parent / f"classes-{java.fingerprint}.jsa"


def cached_lib_dir(version: str | None = None) -> Path | None:
    """The lib directory if a complete copy is cached, else ``None``; never calls Maven."""
    lib = lib_dir(version)
    marker = lib / _MARKER_NAME
    try:
        jars = json.loads(marker.read_text())["jars"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # A marker whose jars were since deleted (a partial cache clean) does not count as complete.
    if not jars or not all((lib / name).is_file() for name in jars):
        return None
    return lib


def missing_prerequisites(version: str | None = None, toolchain: Toolchain | None = None) -> list[str]:
    """What must be installed before a local broker can run; empty when everything is there."""
    tools = toolchain or Toolchain.from_env()
    missing: list[str] = []
    try:
        tools.require_java()
    except (LocalKafkaError, OSError, subprocess.SubprocessError) as exc:  # reported, not raised
        missing.append(str(exc))
    if cached_lib_dir(version) is None and tools.mvn is None:
        missing.append(f"mvn (the Kafka {version or default_version()} jars are not cached yet)")
    return missing


def ensure_jars(version: str | None = None, *, toolchain: Toolchain | None = None) -> Path:
    """Return a directory holding the broker's runtime jars, downloading them with Maven if needed.

    Guarantees: the returned directory is complete (its marker lists every jar and they all exist).
    Concurrent callers wait for one another instead of downloading twice. Raises
    :class:`LocalKafkaError` when Maven is needed but missing or fails (the message carries its output).
    """
    version = version or default_version()
    cached = cached_lib_dir(version)
    if cached is not None:
        return cached
    tools = toolchain or Toolchain.from_env()
    mvn = tools.require_mvn()
    if not POM_PATH.is_file():
        raise LocalKafkaError(f"{POM_PATH} is missing: the jar list comes from it")
    version_dir = lib_dir(version).parent
    version_dir.mkdir(parents=True, exist_ok=True)
    with open(version_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = cached_lib_dir(version)  # another process may have finished while we waited
        if cached is not None:
            return cached
        return _download(mvn, version, version_dir)


def _download(mvn: str, version: str, version_dir: Path) -> Path:
    # Copy into a scratch directory and rename it into place, so a crash mid-copy never leaves a
    # directory that looks usable; the marker is the second line of defence.
    staging = Path(tempfile.mkdtemp(prefix="lib.partial-", dir=version_dir))
    # Maven runs on a copy beside the cache: the installed package may be read-only.
    pom = version_dir / "pom.xml"
    shutil.copyfile(POM_PATH, pom)
    try:
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_MAVEN_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise LocalKafkaError(
                f"Maven did not finish within {_MAVEN_TIMEOUT_S:.0f} s: {' '.join(cmd)}"
            ) from exc
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()[-4000:]
            raise LocalKafkaError(
                f"Maven failed to fetch Kafka {version} (exit {proc.returncode}):\n{output}"
            )
        jars = sorted(p.name for p in staging.glob("*.jar"))
        if not any(name.startswith("kafka_2.13-") for name in jars):
            raise LocalKafkaError(f"Maven finished but no kafka_2.13 jar arrived in {staging}")
        (staging / _MARKER_NAME).write_text(json.dumps({"version": version, "jars": jars}, indent=1))
        target = version_dir / "lib"
        if target.exists():
            shutil.rmtree(target)  # an unfinished copy from an older run (no valid marker)
        for archive in version_dir.glob("classes-*.jsa"):
            archive.unlink()  # made from the old jars: the JVM would ignore it and never rewrite it
        staging.rename(target)
        target.chmod(0o755)  # mkdtemp made it private; the cache is shared by the user's checkouts
        return target
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
