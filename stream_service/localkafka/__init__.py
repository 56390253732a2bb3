"""A real Apache Kafka broker for tests, the demo and benchmarks, without Docker.

Jars come from Maven Central once (cached outside the repository, see :mod:`.jars`); brokers run as
child JVMs on loopback ports and never outlive the Python process (see :mod:`.cluster`).
Command line: ``python -m stream_service.localkafka {start,fetch}`` or ``stream-service kafka ...``.
"""

from stream_service.localkafka.cluster import LocalKafka
from stream_service.localkafka.jars import (
    DEFAULT_KAFKA_VERSION,
    LocalKafkaError,
    Toolchain,
    ensure_jars,
    missing_prerequisites,
)

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "LocalKafka",
    "LocalKafkaError",
    "Toolchain",
    "ensure_jars",
    "missing_prerequisites",
]
