"""stream_service: a Kafka request processor with adaptive micro-batching, fair rate limiting,
bounded in-flight work and at-least-once delivery."""

__all__ = ["__version__"]

__version__ = "0.1.0"
