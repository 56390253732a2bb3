"""Tests for stream_service.pipeline.partition: the same murmur2 as Kafka's clients."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from stream_service.pipeline.partition import murmur2, partition_of


@given(st.binary(max_size=400))
def test_murmur2_is_kafkas(data: bytes) -> None:
    """For any key, the hash equals aiokafka's port of the Java client's murmur2."""
    assert murmur2(data) == aiokafka_murmur2(data) & 0xFFFFFFFF


@given(st.binary(min_size=1, max_size=64), st.integers(1, 64))
def test_partition_matches_the_default_partitioner(key: bytes, count: int) -> None:
    """partition_of picks the partition aiokafka's DefaultPartitioner (Kafka's rule) picks."""
    partitions = list(range(count))
    assert partition_of(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_known_values_of_the_java_client() -> None:
    """Known hashes from Kafka's own test suite (UtilsTest.testMurmur2)."""
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536}
    for key, java in cases.items():
        assert murmur2(key) == java & 0xFFFFFFFF
