"""The artifact store contract, run against both backends (file:// and a real S3 server)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import urllib3

from services.common.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound
from services.common.storage import (
    CHUNK_SIZE,
    FOLDER_MEDIA_TYPE,
    ArtifactStore,
    LocalStore,
    S3Store,
    StoredObject,
    open_store,
    validate_key,
)
from services.common.storage.keys import MAX_KEY_BYTES
from services.common.storage.s3 import SHA256_HEADER
from services.common.storage.spool import LineSpool
from tests.fixtures.s3_server import S3Server

MiB = 1024 * 1024


class GeneratedReader(io.RawIOBase):
    """`total` pseudo-random bytes made on demand; records how much each read asked for."""

    def __init__(self, total: int, *, fail_after: int | None = None, seed: int = 7):
        self.remaining = total
        self.fail_after = fail_after
        self.sent = 0
        self.max_request = 0
        self.reads = 0
        self.sha256 = hashlib.sha256()
        self._rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        self.max_request = max(self.max_request, size if size >= 0 else self.remaining)
        n = self.remaining if size < 0 else min(size, self.remaining)
        if self.fail_after is not None and self.sent + n > self.fail_after:
            raise OSError(f"source broke after {self.sent} bytes")
        data = self._rng.randbytes(n)
        self.remaining -= n
        self.sent += n
        self.sha256.update(data)
        return data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "file":
        return open_store(f"file://{tmp_path / 'artifacts'}")
    server: S3Server = request.getfixturevalue("s3_server")
    # A fresh bucket per test isolates tests on the shared server and exercises bucket creation.
    return open_store(f"s3://t-{uuid.uuid4().hex[:16]}/root/dir", **server.store_settings())


@pytest.fixture
def corrupt(request: pytest.FixtureRequest) -> Callable[[ArtifactStore, str, bytes], None]:
    """Replace an object's bytes behind the store's back, leaving its recorded sha256 stale."""

    def _corrupt(store: ArtifactStore, key: str, data: bytes) -> None:
        old = store.stat(key)
        if isinstance(store, LocalStore):
            (store.root / key).write_bytes(data)
        else:
            assert isinstance(store, S3Store)
            server: S3Server = request.getfixturevalue("s3_server")
            server.client().put_object(
                store.bucket,
                f"root/dir/{key}",
                io.BytesIO(data),
                len(data),
                metadata={SHA256_HEADER: old.sha256},
            )
        assert store.stat(key).sha256 == old.sha256  # the record still claims the old bytes

    return _corrupt


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "config.json": b'{"hidden_size": 64}',
        "model.safetensors": random.Random(1).randbytes(300_000),
        "tokenizer/tokenizer.json": b"{}",
        "tokenizer/special tokens.txt": "ü <s>\n".encode(),
        ".gitattributes": b"*.safetensors filter=lfs\n",
        "empty.bin": b"",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


# --- roundtrips -----------------------------------------------------------------------------


def test_put_bytes_roundtrip(store: ArtifactStore) -> None:
    key = "datasets/abc.jsonl"
    data = b'{"prompt": "hi"}\n' * 3
    ref = store.put_bytes(key, data)
    assert ref == StoredObject(store.uri(key), sha(data), len(data), "application/jsonl")
    assert store.get_bytes(key) == data
    assert store.stat(key) == ref
    assert store.exists(key)


def test_put_overwrites_and_media_type_is_kept(store: ArtifactStore) -> None:
    store.put_bytes("cache/teacher/x.json", b"{}")
    ref = store.put_bytes("cache/teacher/x.json", b"[1]", media_type="application/x-test")
    assert store.get_bytes("cache/teacher/x.json") == b"[1]"
    assert store.stat("cache/teacher/x.json") == ref
    assert ref.media_type == "application/x-test"


def test_empty_object(store: ArtifactStore) -> None:
    ref = store.put_bytes("jobs/j/empty", b"")
    assert (ref.size_bytes, ref.sha256) == (0, sha(b""))
    assert store.get_bytes("jobs/j/empty") == b""
    assert list(store.iter_chunks("jobs/j/empty")) == []


def test_put_file_get_file_roundtrip(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "in.gguf"
    src.write_bytes(random.Random(2).randbytes(1_000_003))
    ref = store.put_file("jobs/j1/gguf/q4_0.gguf", src)
    assert ref.sha256 == sha(src.read_bytes())
    dest = tmp_path / "out" / "nested" / "model.gguf"
    assert store.get_file("jobs/j1/gguf/q4_0.gguf", dest) == ref
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["model.gguf"]  # no temp file left


def test_line_spool_stores_lines_in_position_order(store: ArtifactStore) -> None:
    """Lines added in any order, with gaps, are stored sorted by position; nothing else."""
    with LineSpool() as spool:
        for position in (7, 2, 11, 0):
            spool.add(position, f'{{"at": {position}}}\n'.encode())
        ref = spool.store(store, "jobs/j1/rows.jsonl")
    expected = b'{"at": 0}\n{"at": 2}\n{"at": 7}\n{"at": 11}\n'
    assert store.get_bytes("jobs/j1/rows.jsonl") == expected
    assert (ref.sha256, ref.size_bytes, ref.media_type) == (sha(expected), len(expected),
                                                            "application/jsonl")
    with LineSpool() as empty:
        assert empty.store(store, "jobs/j1/none.jsonl").size_bytes == 0


def test_put_dir_get_dir_roundtrip(store: ArtifactStore, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "ckpt")
    ref = store.put_dir("jobs/j1/checkpoints/step-10", tmp_path / "ckpt")
    assert ref.uri == store.uri("jobs/j1/checkpoints/step-10/")
    assert ref.media_type == FOLDER_MEDIA_TYPE
    assert ref.size_bytes == sum(len(d) for d in files.values())
    assert sorted(store.list("jobs/j1/checkpoints/step-10/")) == sorted(
        f"jobs/j1/checkpoints/step-10/{rel}" for rel in files
    )

    got = store.get_dir(
        "jobs/j1/checkpoints/step-10/", tmp_path / "restored", expected_sha256=ref.sha256
    )
    assert got == ref
    for rel, data in files.items():
        assert (tmp_path / "restored" / rel).read_bytes() == data


def test_get_dir_detects_a_changed_file_set(store: ArtifactStore, tmp_path: Path) -> None:
    make_tree(tmp_path / "ckpt")
    ref = store.put_dir("jobs/j1/adapter", tmp_path / "ckpt")
    store.delete("jobs/j1/adapter/config.json")
    with pytest.raises(DataLoss, match="does not match its ref"):
        store.get_dir("jobs/j1/adapter", tmp_path / "restored", expected_sha256=ref.sha256)


def test_folder_prefix_does_not_match_siblings(store: ArtifactStore, tmp_path: Path) -> None:
    store.put_bytes("jobs/j1/adapter/a.bin", b"a")
    store.put_bytes("jobs/j1/adapter2/b.bin", b"b")
    got = store.get_dir("jobs/j1/adapter", tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.bin"]
    assert got.size_bytes == 1


# --- streaming --------------------------------------------------------------------------------


def test_streaming_put_reads_in_chunks(store: ArtifactStore) -> None:
    total = 20 * MiB + 123
    source = GeneratedReader(total)
    ref = store.put("jobs/j1/checkpoints/step-1/model.safetensors", source)

    assert ref.size_bytes == total
    assert ref.sha256 == source.sha256.hexdigest()
    # Never asked the source for the whole thing: bounded reads, several of them.
    assert 0 < source.max_request <= CHUNK_SIZE
    assert source.reads > total // CHUNK_SIZE

    digest, sizes = hashlib.sha256(), []
    tracemalloc.start()
    try:
        for chunk in store.iter_chunks("jobs/j1/checkpoints/step-1/model.safetensors", 4 * MiB):
            digest.update(chunk)
            sizes.append(len(chunk))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == ref.sha256
    assert sum(sizes) == total and max(sizes) <= 4 * MiB
    assert peak < 3 * 4 * MiB  # a few chunks in flight, never the 20 MiB object


def test_open_returns_a_file_like_reader(store: ArtifactStore) -> None:
    store.put_bytes("a/b.txt", b"line one\nline two\n")
    with store.open("a/b.txt") as reader, io.BufferedReader(reader) as buffered:
        assert buffered.readline() == b"line one\n"
        assert buffered.read() == b"line two\n"


# --- integrity --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "replacement",
    [b"X" * 1000, b"short", b"Y" * 5000],
    ids=["same-size", "shorter", "longer"],
)
def test_reading_corrupted_bytes_raises_data_loss(
    store: ArtifactStore, corrupt, tmp_path: Path, replacement: bytes
) -> None:
    key = "jobs/j1/curated.jsonl"
    store.put_bytes(key, b"A" * 1000)
    corrupt(store, key, replacement)

    with pytest.raises(DataLoss, match=r"artifact 'jobs/j1/curated.jsonl' is corrupt"):
        store.get_bytes(key)
    with pytest.raises(DataLoss):
        list(store.iter_chunks(key, 64))
    with pytest.raises(DataLoss):
        store.get_file(key, tmp_path / "out" / "curated.jsonl")
    assert list((tmp_path / "out").iterdir()) == []  # the unverified download was discarded


def test_data_loss_maps_to_grpc_data_loss() -> None:
    import grpc

    assert DataLoss.code == grpc.StatusCode.DATA_LOSS


# --- exists / stat / list / delete ----------------------------------------------------------


def test_missing_objects(store: ArtifactStore) -> None:
    assert not store.exists("nope/x")
    with pytest.raises(NotFound, match="nope/x"):
        store.stat("nope/x")
    with pytest.raises(NotFound, match="nope/x"):
        store.get_bytes("nope/x")
    assert list(store.list()) == []
    store.delete("nope/x")  # idempotent


def test_list_is_a_sorted_string_prefix_match(store: ArtifactStore) -> None:
    keys = ["jobs/1/a", "jobs/1/b/c", "jobs/10/a", "jobs/2", "datasets/x.jsonl", "jobs/1.txt"]
    for key in keys:
        store.put_bytes(key, key.encode())
    assert list(store.list()) == sorted(keys)
    assert list(store.list("jobs/1/")) == ["jobs/1/a", "jobs/1/b/c"]
    assert list(store.list("jobs/1")) == ["jobs/1.txt", "jobs/1/a", "jobs/1/b/c", "jobs/10/a"]
    assert list(store.list("jobs/1/b/")) == ["jobs/1/b/c"]
    assert list(store.list("zzz/")) == []


def test_delete_and_delete_prefix(store: ArtifactStore) -> None:
    for key in ["jobs/1/a", "jobs/1/b/c", "jobs/10/a"]:
        store.put_bytes(key, b"x")
    store.delete("jobs/1/a")
    assert not store.exists("jobs/1/a")
    assert store.delete_prefix("jobs/1/") == 1
    assert list(store.list()) == ["jobs/10/a"]
    with pytest.raises(InvalidArgument, match="whole store"):
        store.delete_prefix("")
    if isinstance(store, LocalStore):  # cleanup also removes the emptied folders
        assert not (store.root / "jobs" / "1").exists()
    for key in ["cache/teacher/a.json", "cache/teacher/b.json", "cache/teacher/c.json"]:
        store.put_bytes(key, b"x")
    # in one batch on S3; a key already gone is no error
    store.delete_keys(["cache/teacher/a.json", "cache/teacher/gone.json", "cache/teacher/c.json"])
    assert list(store.list()) == ["cache/teacher/b.json", "jobs/10/a"]
    store.delete_keys([])


# --- interrupted writes ---------------------------------------------------------------------


def test_interrupted_write_leaves_nothing(store: ArtifactStore) -> None:
    key = "jobs/j1/checkpoints/step-2/model.safetensors"
    with pytest.raises(OSError, match="source broke"):
        store.put(key, GeneratedReader(3 * CHUNK_SIZE, fail_after=CHUNK_SIZE + 10))
    assert not store.exists(key)
    assert list(store.list()) == []
    if isinstance(store, LocalStore):  # not even a temp file
        assert [p for p in store.root.rglob("*") if p.is_file()] == []


def test_interrupted_overwrite_keeps_the_old_object(store: ArtifactStore) -> None:
    ref = store.put_bytes("cache/teacher/k.json", b'{"v": 1}')
    with pytest.raises(OSError, match="source broke"):
        store.put("cache/teacher/k.json", GeneratedReader(100, fail_after=50))
    assert store.stat("cache/teacher/k.json") == ref
    assert store.get_bytes("cache/teacher/k.json") == b'{"v": 1}'


# --- keys and URIs ----------------------------------------------------------------------------

BAD_KEYS = {
    "empty": ("", "must not be empty"),
    "dotdot": ("jobs/../etc/passwd", "'..' path segment"),
    "dotdot-leading": ("../x", "'..' path segment"),
    "dot": ("jobs/./x", "'.' path segment"),
    "absolute": ("/etc/passwd", "absolute path"),
    "backslash": ("jobs\\x", "backslash"),
    "nul": ("jobs/x\x00y", "control character"),
    "newline": ("jobs/x\ny", "control character"),
    "del": ("jobs/x\x7f", "control character"),
    "double-slash": ("jobs//x", "empty path segment"),
    "trailing-slash": ("jobs/x/", "empty path segment"),
    "too-long": ("a/" * (MAX_KEY_BYTES // 2) + "b", "over the 1024-byte limit"),
    "long-utf8": ("é" * 513, "over the 1024-byte limit"),  # 513 chars, 1026 bytes
    "long-segment": ("x" * 251, "segment over 250 bytes"),
    "surrogate": ("a\udc80", "not valid UTF-8"),
    "reserved": (".distill-meta/x", "reserved"),
}


@pytest.mark.parametrize(("key", "problem"), BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_bad_keys_are_rejected(store: ArtifactStore, key: str, problem: str) -> None:
    operations = [
        lambda: store.put_bytes(key, b"x"),
        lambda: store.get_bytes(key),
        lambda: store.exists(key),
        lambda: store.stat(key),
        lambda: store.delete(key),
    ]
    if not key.endswith("/"):  # uri() also names folders, which end in "/"
        operations.append(lambda: store.uri(key))
    for operation in operations:
        with pytest.raises(InvalidArgument, match="invalid artifact key") as info:
            operation()
        assert problem in str(info.value)
        assert repr(key[:120]) in str(info.value)
    assert list(store.list()) == []


@pytest.mark.parametrize(
    "key",
    [
        "datasets/0a1b.jsonl",
        "jobs/j1/checkpoints/step-10/.gitattributes",
        "a",
        "ü/ß €.bin",
        "jobs/a b#c?d%20e",
        "..x/x..",
        "x" * 250,
    ],
)
def test_good_keys_roundtrip_through_uris(store: ArtifactStore, key: str) -> None:
    assert validate_key(key) == key
    ref = store.put_bytes(key, b"ok")
    assert ref.uri == store.uri(key)
    assert store.key_from_uri(ref.uri) == key
    assert list(store.list()) == [key]


def test_uri_shapes(store: ArtifactStore, tmp_path: Path) -> None:
    if isinstance(store, LocalStore):
        assert store.uri("a/b.jsonl") == f"file://{tmp_path}/artifacts/a/b.jsonl"
    else:
        assert store.uri("a/b.jsonl") == f"s3://{store.bucket}/root/dir/a/b.jsonl"
    assert store.key_from_uri(store.uri("jobs/j1/adapter/")) == "jobs/j1/adapter/"


def test_foreign_uris_are_rejected(store: ArtifactStore) -> None:
    foreign = [
        "s3://other-bucket/root/dir/a/b",
        "file:///etc/passwd",
        "https://example.com/a/b",
        store.base_uri + "../escape",
        store.base_uri + "x/%2e%2e/y",
        store.base_uri.rstrip("/") + "-sibling/a/b",
        "",
    ]
    for uri in foreign:
        with pytest.raises(InvalidArgument):
            store.key_from_uri(uri)


# --- factory and backend specifics ----------------------------------------------------------


def test_open_store_rejects_unknown_schemes() -> None:
    with pytest.raises(InvalidArgument, match=r"allowed: file://, s3://"):
        open_store("gs://bucket/x")
    with pytest.raises(InvalidArgument, match="allowed"):
        open_store("/plain/path")


def test_open_store_s3_needs_bucket_and_endpoint() -> None:
    with pytest.raises(InvalidArgument, match="endpoint"):
        open_store("s3://bucket/prefix")
    with pytest.raises(InvalidArgument, match="no bucket"):
        open_store("s3:///prefix", endpoint="127.0.0.1:1")
    with pytest.raises(InvalidArgument, match="invalid S3 store settings"):
        open_store("s3://x", endpoint="127.0.0.1:1")  # bucket names have 3+ characters


def test_open_store_file_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("file:.distill/artifacts")
    assert isinstance(relative, LocalStore)
    assert relative.root == tmp_path / ".distill" / "artifacts"
    assert relative.base_uri == f"file://{tmp_path}/.distill/artifacts/"
    assert open_store(f"file://{tmp_path}/x").root == tmp_path / "x"
    with pytest.raises(InvalidArgument, match="names host"):
        open_store("file://somehost/x")


def test_local_sidecars_stay_out_of_listings_and_key_space(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("a.json", b"{}")
    store.put_bytes("b/c", b"c")
    assert list(store.list()) == ["a.json", "b/c"]
    assert (tmp_path / "a.json").read_bytes() == b"{}"  # the object is a plain file at its key
    with pytest.raises(FailedPrecondition, match="collides"):
        store.put_bytes("a.json/d", b"d")  # a filesystem can't hold "a.json" and "a.json/d"


def test_local_missing_file_behind_a_record_is_data_loss(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("a/b", b"x")
    (tmp_path / "a" / "b").unlink()
    with pytest.raises(DataLoss, match="file is missing"):
        store.get_bytes("a/b")


def test_local_durable_put_fsyncs_both_files_then_both_folders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A power loss after a put returns must not lose it: each file is forced to disk before the
    rename that publishes it, and each folder after the rename it holds (the rename itself lives
    in the folder). The calls are observed as they reach the kernel."""
    events: list[tuple[str, ...]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", str(src), str(dst)))
        real_replace(src, dst)

    store = LocalStore(tmp_path)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store.put_bytes("jobs/j/out.jsonl", b"{}\n")
    data, meta = tmp_path / "jobs/j/out.jsonl", tmp_path / ".distill-meta/jobs/j/out.jsonl.json"
    renames = {dst: (i, src) for i, (kind, *rest) in enumerate(events) if kind == "replace"
               for src, dst in [rest]}
    synced = {path: i for i, (kind, *rest) in enumerate(events) if kind == "fsync"
              for path in rest}
    last_rename = max(i for i, _ in renames.values())
    for target in (data, meta):
        at, temp = renames[str(target)]
        assert synced[temp] < at, events  # the file reached the disk before it was published
        assert synced[str(target.parent)] > last_rename, events
    # The put made jobs/j/ and .distill-meta/jobs/j/: the folders that gained them are synced.
    for folder in ("", "jobs", ".distill-meta", ".distill-meta/jobs"):
        assert synced[str(tmp_path.joinpath(folder))] > last_rename, (folder, events)
    events.clear()
    store.put_bytes("cache/x", b"x", durable=False)  # the teacher cache: no forced writes
    assert [e for e in events if e[0] == "fsync"] == []


def test_s3_creates_the_bucket_on_first_write(s3_server: S3Server) -> None:
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    store = open_store(f"s3://{bucket}", **s3_server.store_settings())
    client = s3_server.client()
    assert not client.bucket_exists(bucket)
    assert list(store.list()) == []  # listing a missing bucket is just empty
    store.put_bytes("a", b"a")
    assert client.bucket_exists(bucket)
    assert store.uri("a") == f"s3://{bucket}/a"


def test_s3_object_without_checksum_is_data_loss(s3_server: S3Server) -> None:
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    store = open_store(f"s3://{bucket}", **s3_server.store_settings())
    store.ensure_bucket()
    s3_server.client().put_object(bucket, "foreign", io.BytesIO(b"x"), 1)
    with pytest.raises(DataLoss, match="no recorded sha256"):
        store.get_bytes("foreign")


def test_s3_wrong_credentials_are_permission_denied(s3_server: S3Server) -> None:
    from services.common.errors import PermissionDenied

    settings = {**s3_server.store_settings(), "secret_key": "wrong"}
    store = open_store(f"s3://t-{uuid.uuid4().hex[:16]}", **settings)
    with pytest.raises(PermissionDenied):
        store.put_bytes("a", b"a")


def test_s3_unreachable_server_is_unavailable() -> None:
    from services.common.errors import Unavailable

    no_retries = urllib3.PoolManager(retries=urllib3.Retry(total=0))  # minio's default: ~6 s
    store = S3Store("bucket", endpoint="127.0.0.1:9", secure=False, http_client=no_retries)
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:9"):
        store.exists("a")
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:9"):
        store.put_bytes("a", b"a")


def test_non_durable_put_round_trips(store):
    ref = store.put_bytes("cache/teacher/abc.json", b'{"text": "hi"}', durable=False)
    assert store.get_bytes("cache/teacher/abc.json") == b'{"text": "hi"}'
    assert store.stat("cache/teacher/abc.json").sha256 == ref.sha256


def test_modified_is_the_time_of_the_write(store: ArtifactStore):
    import time

    before = time.time()
    store.put_bytes("a/when.txt", b"x")
    after = time.time()
    # (a server's clock and a file system's timestamps are at most a second coarse)
    assert before - 2 <= store.modified("a/when.txt") <= after + 2
    with pytest.raises(NotFound):
        store.modified("a/missing.txt")
