"""The Distiller: the Python SDK over GatewayService.

    from distill.client import Distiller
    with Distiller("127.0.0.1:50051") as d:
        dataset = d.upload("examples/sentiment/train.jsonl")
        job = d.distill(d.spec(dataset=dataset, teacher="gpt-4o-mini", student="smollm2-135m"))
        for snapshot in d.watch(job.name):
            print(snapshot.state, snapshot.progress.done, snapshot.cost_usd)

Results are the protobuf messages of distill.v1 (typed, with .pyi stubs). Every failure is a
`DistillClientError` carrying the gRPC status code and the server's message.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from distill.v1 import admin_pb2, admin_pb2_grpc, common_pb2, gateway_pb2, gateway_pb2_grpc

UPLOAD_CHUNK = 1024 * 1024
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
TERMINAL = (gateway_pb2.JOB_STATE_SUCCEEDED, gateway_pb2.JOB_STATE_FAILED,
            gateway_pb2.JOB_STATE_CANCELLED)


class _VerifiedChunks:
    """A DownloadArtifact stream's bytes, checked against the ref it must open with: a stream
    with no ref first, a second ref, or bytes that do not match its size and sha256 end in
    DATA_LOSS (after the last chunk: callers keep nothing until the iteration ends)."""

    def __init__(self, uri: str, parts: Iterator[gateway_pb2.DownloadArtifactResponse]) -> None:
        self.uri = uri
        self.sha256 = ""
        self._parts = parts

    def __iter__(self) -> Iterator[bytes]:
        ref: common_pb2.ArtifactRef | None = None
        digest, size = hashlib.sha256(), 0
        for part in self._parts:
            if part.HasField("artifact") and ref is None:
                ref = part.artifact
            elif ref is None or part.HasField("artifact"):
                self._refuse("the stream must start with the artifact's ref, once")
            elif part.HasField("chunk"):
                digest.update(part.chunk)
                size += len(part.chunk)
                yield part.chunk
        if ref is None or not ref.sha256:
            self._refuse("the stream carried no sha256 to verify")
        if size != ref.size_bytes or digest.hexdigest() != ref.sha256:
            self._refuse(f"received {size} bytes with sha256 {digest.hexdigest()}, expected "
                         f"{ref.size_bytes} bytes with sha256 {ref.sha256}")
        self.sha256 = ref.sha256

    def _refuse(self, why: str) -> None:
        raise DistillClientError(grpc.StatusCode.DATA_LOSS, f"{self.uri}: {why}")


class DistillClientError(Exception):
    """A failed gateway call: `code` is the grpc.StatusCode, the message is the server's."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def _folder_digest(sha256_by_path: Mapping[str, str]) -> str:
    """A folder ArtifactRef's sha256: of a `sha256sum`-style listing of its files, sorted by
    relative path (the artifact store's rule)."""
    listing = "".join(f"{sha256_by_path[p]}  {p}\n" for p in sorted(sha256_by_path))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def _wrap(exc: grpc.RpcError) -> DistillClientError:
    return DistillClientError(exc.code(), exc.details() or exc.code().name)


def open_channel(address: str, *, tls: bool = False,
                 ca_file: str | Path | None = None) -> grpc.Channel:
    """A channel to `address`: plaintext, or with `tls` (or a `ca_file`) TLS that trusts the
    CA in `ca_file` (PEM), else the system's roots."""
    if not tls and ca_file is None:
        return grpc.insecure_channel(address)
    roots = Path(ca_file).read_bytes() if ca_file is not None else None
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=roots))


class Distiller:
    """`token` is the project's API key (or the one token of a one-user install, or the admin
    key for the API-key calls); `tls`/`ca_file` as in `open_channel`."""

    def __init__(self, address: str = "127.0.0.1:50051", *, token: str | None = None,
                 timeout: float = 60.0, channel: grpc.Channel | None = None, tls: bool = False,
                 ca_file: str | Path | None = None) -> None:
        self._channel = channel or open_channel(address, tls=tls, ca_file=ca_file)
        self._stub = gateway_pb2_grpc.GatewayServiceStub(self._channel)
        self._admin = admin_pb2_grpc.AdminServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Distiller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Any, timeout: float | None = None,
              stub: Any = None) -> Any:
        try:
            return getattr(stub or self._stub, method)(request, timeout=timeout or self.timeout,
                                                       metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _wrap(exc) from None

    # -- building specs ----------------------------------------------------------------------

    @staticmethod
    def spec(*, dataset: common_pb2.ArtifactRef, student: str,
             teacher: str | common_pb2.ModelSpec | None = None,
             judge: common_pb2.JudgeSpec | None = None, n_samples: int = 0,
             top_k: int = 0, min_score: float | None = None, **fields: Any
             ) -> gateway_pb2.DistillSpec:
        """A DistillSpec from the common choices; other DistillSpec fields as a dict each
        (e.g. training={"max_steps": 50}, bond={"bond_beta": 0.5}, budget_usd=5.0, or
        committee=[{"teacher": {"model": "gpt-4o"}, "n_samples": 2}, ...] instead of a
        teacher). What is left unset (n_samples and top_k 0) gets the gateway's default, from
        its spec layer."""
        spec = gateway_pb2.DistillSpec(dataset=dataset, student_model=student,
                                       n_samples=n_samples)
        if teacher is not None:
            spec.teacher.CopyFrom(teacher if isinstance(teacher, common_pb2.ModelSpec)
                                  else common_pb2.ModelSpec(model=teacher))
        spec.judge.top_k = top_k
        if min_score is not None:
            spec.judge.min_score = min_score
        spec.judge.judge.CopyFrom(judge or common_pb2.JudgeSpec(llm=common_pb2.LlmJudge()))
        json_format.ParseDict(fields, spec)
        return spec

    @staticmethod
    def spec_from_dict(data: Mapping[str, Any]) -> gateway_pb2.DistillSpec:
        """A DistillSpec from its JSON form (field names as in the .proto or lowerCamelCase)."""
        try:
            return json_format.ParseDict(data, gateway_pb2.DistillSpec())
        except json_format.ParseError as exc:
            raise DistillClientError(grpc.StatusCode.INVALID_ARGUMENT, f"spec: {exc}") from None

    # -- datasets and artifacts --------------------------------------------------------------

    def upload(self, path: str | Path) -> common_pb2.ArtifactRef:
        """Streams a JSONL file to the gateway's store (deduplicated by sha256)."""
        path = Path(path)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(UPLOAD_CHUNK), b""):
                digest.update(block)

        def requests() -> Iterator[gateway_pb2.UploadDatasetRequest]:
            yield gateway_pb2.UploadDatasetRequest(metadata=gateway_pb2.UploadMetadata(
                filename=path.name, sha256=digest.hexdigest()))
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(UPLOAD_CHUNK), b""):
                    yield gateway_pb2.UploadDatasetRequest(chunk=block)

        return self._call("UploadDataset", requests(), timeout=max(self.timeout, 600)).dataset

    def download(self, uri: str, dest: str | Path) -> Path:
        """Writes an artifact (a job's candidates, curated set, GGUF, ...) to `dest`."""
        dest = Path(dest)
        self._fetch(uri, dest)
        return dest

    def _fetch(self, uri: str, dest: Path) -> str:
        """Downloads one file artifact to `dest`; returns its sha256 (checked on arrival).
        `dest` appears only once every byte is verified."""
        tmp = dest.with_name(dest.name + ".part")
        try:
            with open(tmp, "wb") as out:
                chunks = self._verified_chunks(uri)
                for chunk in chunks:
                    out.write(chunk)
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
        return chunks.sha256

    def _verified_chunks(self, uri: str) -> _VerifiedChunks:
        return _VerifiedChunks(uri, self._stream("DownloadArtifact",
                                                 gateway_pb2.DownloadArtifactRequest(uri=uri)))

    def download_report(self, job: str, dest: str | Path) -> Path:
        """Downloads the job's report (index.html, its PNG plots, report.json) into the folder
        `dest`; returns the path of index.html. FAILED_PRECONDITION while the job has none."""
        snapshot = self.get(job)
        ref = snapshot.outputs.report
        if not ref.uri:
            state = gateway_pb2.JobState.Name(snapshot.state).removeprefix("JOB_STATE_").lower()
            raise DistillClientError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{job} has no report yet (state: {state}); the gateway writes it when the job "
                "ends")
        return self._download_folder(ref, Path(dest), f"{job}'s report")

    def _download_folder(self, ref: common_pb2.ArtifactRef, dest: Path, what: str) -> Path:
        """A report folder, file by file as its report.json lists them, checked against the
        folder's digest; the path of its index.html."""
        dest.mkdir(parents=True, exist_ok=True)
        digests = {"report.json": self._fetch(ref.uri + "report.json", dest / "report.json")}
        files = json.loads((dest / "report.json").read_text(encoding="utf-8")).get("files", [])
        for name in files:
            if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name):
                raise DistillClientError(grpc.StatusCode.DATA_LOSS,
                                         f"{ref.uri}report.json lists a bad file name {name!r}")
            if name not in digests:
                digests[name] = self._fetch(ref.uri + name, dest / name)
        if ref.sha256 and _folder_digest(digests) != ref.sha256:
            raise DistillClientError(
                grpc.StatusCode.DATA_LOSS,
                f"{what} at {ref.uri} does not match its ref (changed while downloading, "
                "or incomplete): try again")
        return dest / "index.html"

    def read_jsonl(self, uri: str) -> Iterator[dict[str, Any]]:
        """The artifact's rows as they arrive; DATA_LOSS at the end if its bytes do not match
        its sha256."""
        buffer = b""
        for chunk in self._verified_chunks(uri):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            yield from (json.loads(line) for line in lines if line.strip())
        if buffer.strip():
            yield json.loads(buffer)

    def candidates(self, job: str) -> Iterator[dict[str, Any]]:
        """The teacher's candidate groups of a job (after its generation stage)."""
        uri = self.get(job).outputs.candidates.uri
        if not uri:
            raise DistillClientError(grpc.StatusCode.FAILED_PRECONDITION,
                                     f"{job} has no candidates yet")
        return self.read_jsonl(uri)

    def artifacts(self, job: str) -> dict[str, common_pb2.ArtifactRef]:
        """The job's finished stage outputs by name (dataset, candidates, curated, ...)."""
        outputs = self.get(job).outputs
        return {f.name: ref for f, ref in outputs.ListFields()}

    def _stream(self, method: str, request: Any) -> Iterator[Any]:
        try:
            yield from getattr(self._stub, method)(request, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _wrap(exc) from None

    # -- jobs --------------------------------------------------------------------------------

    def estimate(self, spec: gateway_pb2.DistillSpec,
                 batch_api: bool = False) -> gateway_pb2.EstimateResponse:
        return self._call("Estimate", gateway_pb2.EstimateRequest(spec=spec, batch_api=batch_api))

    def distill(self, spec: gateway_pb2.DistillSpec,
                request_id: str | None = None) -> gateway_pb2.Job:
        """Starts a job and returns it at once. Retrying with the same request_id is safe."""
        request = gateway_pb2.DistillRequest(spec=spec, request_id=request_id or str(uuid.uuid4()))
        return self._call("Distill", request).job

    create = distill

    def get(self, name: str) -> gateway_pb2.Job:
        return self._call("GetJob", gateway_pb2.GetJobRequest(name=name)).job

    def list(self, states: Iterable[int] = (), page_size: int = 50) -> Iterator[gateway_pb2.Job]:
        """Every job, newest first, fetched page by page."""
        token = ""
        while True:
            page = self._call("ListJobs", gateway_pb2.ListJobsRequest(
                page_size=page_size, page_token=token, states=list(states)))
            yield from page.jobs
            token = page.next_page_token
            if not token:
                return

    def watch(self, name: str, reconnect_seconds: float = 60.0) -> Iterator[gateway_pb2.Job]:
        """Snapshots as the gateway pushes them, until a terminal state; reconnects when the
        gateway restarts (for up to `reconnect_seconds` without a reply)."""
        for reply in self._reconnecting(
                lambda: self._stub.WatchJob(gateway_pb2.WatchJobRequest(name=name),
                                            metadata=self._metadata), reconnect_seconds):
            yield reply.job
            if reply.job.state in TERMINAL:
                return

    def _reconnecting(self, open_stream: Callable[[], Iterable[Any]],
                      reconnect_seconds: float) -> Iterator[Any]:
        """The replies of `open_stream()`, opened again whenever it ends or the gateway is
        UNAVAILABLE (a restart), until the gateway has not answered for `reconnect_seconds`."""
        last_contact = time.monotonic()
        while True:
            stream = open_stream()
            try:
                for reply in stream:
                    last_contact = time.monotonic()
                    yield reply
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or \
                        time.monotonic() - last_contact > reconnect_seconds:
                    raise _wrap(exc) from None
            finally:
                # A caller that stops (Ctrl-C, break) ends the call now, not when the channel
                # closes or the collector gets to it.
                cancel = getattr(stream, "cancel", None)
                if cancel is not None:
                    cancel()
            time.sleep(1.0)  # the stream ended early (gateway restarting): watch again

    def wait(self, name: str, timeout: float | None = None) -> gateway_pb2.Job:
        """Blocks until the job is terminal; returns its final snapshot."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in self.watch(name):
            if job.state in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise DistillClientError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                         f"{name} still {gateway_pb2.JobState.Name(job.state)}")
        return self.get(name)

    def cancel(self, name: str) -> gateway_pb2.Job:
        return self._call("CancelJob", gateway_pb2.CancelJobRequest(name=name)).job

    def delete(self, name: str) -> gateway_pb2.DeleteJobResponse:
        """Deletes a finished job and the artifacts only it uses; returns how many stored
        objects went (`artifacts_deleted`) and how many teacher-cache entries no other job uses
        (`cache_entries_deleted`). FAILED_PRECONDITION while it runs or while an alias serves
        its student."""
        return self._call("DeleteJob", gateway_pb2.DeleteJobRequest(name=name))

    def delete_dataset(self, uri: str) -> int:
        """Deletes an uploaded dataset; returns how many stored objects went. FAILED_PRECONDITION
        while a job that has not ended uses it."""
        return self._call("DeleteDataset",
                          gateway_pb2.DeleteDatasetRequest(uri=uri)).artifacts_deleted

    def logs(self, name: str, *, follow: bool = False,
             page_size: int = 100) -> Iterator[gateway_pb2.JobEvent]:
        """The job's event log, oldest first: state changes, steps, retries, warnings, errors.
        With `follow`, goes on as the job runs (fetching after each change WatchJob pushes) and
        ends with the job."""
        changes = self.watch(name) if follow else None
        token = ""
        try:
            while True:
                page = self._call("ListJobEvents", gateway_pb2.ListJobEventsRequest(
                    parent=name, page_size=page_size, page_token=token))
                yield from page.events
                if not page.next_page_token:
                    return  # the job has ended and that was its last event
                token = page.next_page_token
                if len(page.events) < page_size:
                    if changes is None:
                        return
                    next(changes, None)  # the job's next change (at once, once it has ended)
        finally:
            if changes is not None:
                changes.close()  # ends the WatchJob stream

    def metrics(self, name: str) -> gateway_pb2.GetJobMetricsResponse:
        """The training curve (`.training`, one TrainingStep per logged step; `.training_note`
        says why it is empty) and the held-out evaluation (`.evaluation`)."""
        return self._call("GetJobMetrics", gateway_pb2.GetJobMetricsRequest(name=name))

    # -- traces ------------------------------------------------------------------------------

    def trace_days(self, alias: str) -> list[gateway_pb2.TraceDay]:
        """The UTC days with traces of `alias`, oldest first (segments and bytes per day)."""
        return list(self._call("ListTraceDays",
                               gateway_pb2.ListTraceDaysRequest(alias=alias)).days)

    def dataset_from_traces(self, alias: str, *, since: datetime | None = None,
                            until: datetime | None = None, targets: Iterable[str] = (),
                            fallbacks_only: bool = False, validator_failed_only: bool = False,
                            tags: Mapping[str, str] | None = None,
                            keep_duplicates: bool = False, max_rows: int = 0, seed: int = 0,
                            answers_as_reference: bool = False,
                            ) -> gateway_pb2.CreateDatasetFromTracesResponse:
        """A dataset from `alias`'s traces (default window: the 7 days before `until`, now);
        `.dataset` goes into a spec's `dataset` as it is."""
        request = gateway_pb2.CreateDatasetFromTracesRequest(
            alias=alias, targets=list(targets), fallbacks_only=fallbacks_only,
            validator_failed_only=validator_failed_only, tags=dict(tags or {}),
            keep_duplicates=keep_duplicates, max_rows=max_rows, seed=seed,
            answers_as_reference=answers_as_reference)
        if since is not None:
            request.start_time.FromDatetime(since)
        if until is not None:
            request.end_time.FromDatetime(until)
        return self._call("CreateDatasetFromTraces", request)

    # -- aliases -----------------------------------------------------------------------------

    def set_alias(self, name: str, *, job: str | None = None, teacher: str | None = None,
                  expected_version: int = 0, description: str = "",
                  gguf: str | None = None,
                  target: gateway_pb2.AliasTarget | None = None,
                  routing: gateway_pb2.AliasRouting | Mapping[str, Any] | None = None,
                  ) -> gateway_pb2.Alias:
        """Compare-and-swap: pass the version you last saw (0 to create); ABORTED if stale.
        `gguf`: another of the job's exported GGUFs than its student GGUF (a job target).
        `target` takes a whole AliasTarget (an upstream, a max_tokens_limit) instead.
        `routing` (an AliasRouting or its JSON form as a dict): canary and shadow targets, a
        validator with a fallback teacher, a live judge, trace capture and redaction."""
        target = target or gateway_pb2.AliasTarget(description=description)
        if gguf:
            target.gguf.uri = gguf
        if job:
            target.job = job
        elif teacher:
            target.teacher.model = teacher
        request = gateway_pb2.SetAliasRequest(name=name, target=target,
                                              expected_version=expected_version)
        if isinstance(routing, Mapping):
            json_format.ParseDict(routing, request.routing)
        elif routing is not None:
            request.routing.CopyFrom(routing)
        return self._call("SetAlias", request).alias

    def get_alias(self, name: str) -> gateway_pb2.Alias:
        return self._call("GetAlias", gateway_pb2.GetAliasRequest(name=name)).alias

    def list_aliases(self) -> Iterator[gateway_pb2.Alias]:
        token = ""
        while True:
            page = self._call("ListAliases", gateway_pb2.ListAliasesRequest(page_token=token))
            yield from page.aliases
            if not (token := page.next_page_token):
                return

    def download_alias_report(self, name: str, dest: str | Path,
                              window_days: int = 0) -> Path:
        """Renders the alias page over the last `window_days` (0: 7) and downloads it into the
        folder `dest`; returns the path of its index.html."""
        ref = self._call("BuildAliasReport", gateway_pb2.BuildAliasReportRequest(
            name=name, window_days=window_days)).report
        return self._download_folder(ref, Path(dest), f"alias {name}'s report")

    def watch_aliases(self, resume_after: int = 0, reconnect_seconds: float = 60.0
                      ) -> Iterator[gateway_pb2.WatchAliasesResponse]:
        """Every alias (a `snapshot` reply), then each `change` as the gateway makes it, for as
        long as the caller iterates. Reconnects after a gateway restart and resumes after the
        last reply's `sequence` (a snapshot again when that is too far back). A reply with a
        snapshot replaces everything the caller held: it also comes when the caller was too
        slow to keep up with the changes."""
        last = resume_after

        def open_stream() -> Iterable[gateway_pb2.WatchAliasesResponse]:
            return self._stub.WatchAliases(gateway_pb2.WatchAliasesRequest(resume_after=last),
                                           metadata=self._metadata)

        for reply in self._reconnecting(open_stream, reconnect_seconds):
            last = reply.sequence
            yield reply

    def rollback_alias(self, name: str, to_version: int = 0,
                       expected_version: int = 0) -> gateway_pb2.Alias:
        return self._call("RollbackAlias", gateway_pb2.RollbackAliasRequest(
            name=name, to_version=to_version, expected_version=expected_version)).alias

    # -- projects' API keys (the admin key only) --------------------------------------------

    def create_api_key(self, project: str,
                       description: str = "") -> admin_pb2.CreateApiKeyResponse:
        """A new key for `project`; `.key` is the key itself, shown this once."""
        return self._call("CreateApiKey", admin_pb2.CreateApiKeyRequest(
            project=project, description=description), stub=self._admin)

    def list_api_keys(self, project: str = "") -> list[admin_pb2.ApiKey]:
        return list(self._call("ListApiKeys", admin_pb2.ListApiKeysRequest(project=project),
                               stub=self._admin).api_keys)

    def revoke_api_key(self, name: str) -> admin_pb2.ApiKey:
        return self._call("RevokeApiKey", admin_pb2.RevokeApiKeyRequest(name=name),
                          stub=self._admin).api_key
