"""UploadDataset: a client-streamed JSONL file into the store, validated, deduplicated by sha256."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator

from distill.v1 import gateway_pb2
from services.common.datasets import count_jsonl
from services.common.errors import InvalidArgument
from services.common.specs.layout import dataset_key
from services.common.storage import ArtifactStore
from services.gateway.job_store import JobStore
from services.gateway.ownership import owned_key

MAX_CHUNK = 4 * 1024 * 1024


async def upload_dataset(requests: AsyncIterator[gateway_pb2.UploadDatasetRequest],
                         store: ArtifactStore, max_bytes: int,
                         project: str) -> gateway_pb2.UploadDatasetResponse:
    first = await anext(aiter(requests), None)
    if first is None or not first.HasField("metadata"):
        raise InvalidArgument("the first message must be metadata (filename, optional sha256)")
    meta = first.metadata
    what = f"dataset {meta.filename!r}" if meta.filename else "dataset"
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(prefix="distill-upload-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as out:
            async for request in requests:
                if not request.HasField("chunk"):
                    raise InvalidArgument("only chunks may follow the metadata")
                if len(request.chunk) > MAX_CHUNK:
                    raise InvalidArgument(f"chunk: at most {MAX_CHUNK} bytes each")
                size += len(request.chunk)
                if size > max_bytes:
                    raise InvalidArgument(f"{what}: over the {max_bytes}-byte upload limit")
                digest.update(request.chunk)
                out.write(request.chunk)
        sha256 = digest.hexdigest()
        if meta.sha256 and meta.sha256.lower() != sha256:
            raise InvalidArgument(f"metadata.sha256: {meta.sha256} does not match the uploaded "
                                  f"content ({sha256})")
        return await asyncio.to_thread(store_dataset, tmp, dataset_key(project, sha256), sha256,
                                       store, what)
    finally:
        os.unlink(tmp)


def store_dataset(path: str, key: str, sha256: str, store: ArtifactStore,
                  what: str) -> gateway_pb2.UploadDatasetResponse:
    """A validated JSONL file at `path` under `key` (once per content: see dataset_key)."""
    with open(path, "rb") as data:
        prompts = count_jsonl(data, what=what)  # nothing is stored unless every line is good
    deduplicated = store.exists(key) and store.stat(key).sha256 == sha256
    stored = store.stat(key) if deduplicated else store.put_file(
        key, path, media_type="application/jsonl")
    return gateway_pb2.UploadDatasetResponse(dataset=stored.as_proto(), deduplicated=deduplicated,
                                             prompts=prompts)


DOWNLOAD_CHUNK = 1024 * 1024


async def download_artifact(uri: str, store: ArtifactStore, project: str,
                            jobs: JobStore) -> AsyncIterator[gateway_pb2.DownloadArtifactResponse]:
    """The project's artifact's ref, then its bytes (sha256 verified by the store at the end)."""
    key = await asyncio.to_thread(owned_key, uri, project, store, jobs)
    stored = await asyncio.to_thread(store.stat, key)
    yield gateway_pb2.DownloadArtifactResponse(artifact=stored.as_proto())
    chunks = store.iter_chunks(key, DOWNLOAD_CHUNK)
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        yield gateway_pb2.DownloadArtifactResponse(chunk=chunk)
