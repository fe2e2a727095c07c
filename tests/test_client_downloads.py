"""The SDK verifies every download against the ref the stream opens with: a stream whose sha256
comes late or never, or whose bytes differ, is DATA_LOSS and leaves no file behind."""

from __future__ import annotations

import hashlib
from typing import ClassVar

import grpc
import pytest

from distill.client import DistillClientError, Distiller
from distill.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from services.common.server import Service
from services.common.settings import ServiceSettings
from tests.fixtures.inprocess import serve_in_thread

CONTENT = b'{"prompt": "a"}\n{"prompt": "b"}\n'


def _ref(data: bytes = CONTENT) -> gateway_pb2.DownloadArtifactResponse:
    return gateway_pb2.DownloadArtifactResponse(artifact=common_pb2.ArtifactRef(
        uri="file:///x/datasets/d.jsonl", sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data)))


def _chunks(data: bytes = CONTENT) -> list[gateway_pb2.DownloadArtifactResponse]:
    half = len(data) // 2
    return [gateway_pb2.DownloadArtifactResponse(chunk=c) for c in (data[:half], data[half:])]


def _corrupted() -> bytes:
    flipped = bytearray(CONTENT)
    flipped[5] ^= 0x01
    return bytes(flipped)


# What the fake gateway sends for each download URI.
STREAMS = {
    "good": [_ref(), *_chunks()],
    "late-ref": [*_chunks()[:1], _ref(), *_chunks()[1:]],
    "no-ref": _chunks(),
    "empty": [],
    "ref-without-sha256": [gateway_pb2.DownloadArtifactResponse(artifact=common_pb2.ArtifactRef(
        uri="file:///x/datasets/d.jsonl", size_bytes=len(CONTENT))), *_chunks()],
    "corrupted-byte": [_ref(), *_chunks(_corrupted())],
    "truncated": [_ref(), *_chunks()[:1]],
    "two-refs": [_ref(), *_chunks()[:1], _ref(), *_chunks()[1:]],
}


class _Settings(ServiceSettings):
    service_name: ClassVar[str] = "fakegateway"


class _FakeGateway(gateway_pb2_grpc.GatewayServiceServicer):
    async def DownloadArtifact(self, request, context):  # noqa: N802 - gRPC method name
        for part in STREAMS[request.uri]:
            yield part


@pytest.fixture(scope="module")
def client():
    services = [Service.of(gateway_pb2, gateway_pb2_grpc, _FakeGateway())]
    with serve_in_thread(_Settings(port=0, grace_seconds=0), services) as address:
        with Distiller(address) as distiller:
            yield distiller


def test_a_verified_download_is_written(client, tmp_path):
    dest = client.download("good", tmp_path / "d.jsonl")
    assert dest.read_bytes() == CONTENT
    assert [row["prompt"] for row in client.read_jsonl("good")] == ["a", "b"]


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("late-ref", "must start with the artifact's ref"),
        ("two-refs", "must start with the artifact's ref"),
        ("no-ref", "must start with the artifact's ref"),
        ("empty", "no sha256 to verify"),
        ("ref-without-sha256", "no sha256 to verify"),
        ("corrupted-byte", "expected 32 bytes with sha256"),
        ("truncated", "received 16 bytes"),
    ],
)
def test_unverifiable_downloads_are_data_loss_and_leave_no_file(client, tmp_path, uri, fragment):
    dest = tmp_path / "d.jsonl"
    with pytest.raises(DistillClientError) as raised:
        client.download(uri, dest)
    assert raised.value.code == grpc.StatusCode.DATA_LOSS
    assert fragment in raised.value.message and uri in raised.value.message
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part
    with pytest.raises(DistillClientError) as raised:
        list(client.read_jsonl(uri))
    assert raised.value.code == grpc.StatusCode.DATA_LOSS
