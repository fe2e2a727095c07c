"""A property-based fuzz of every gateway RPC, unary and streaming: random fields (messages built
from the request's descriptor, some fields drawn from real values so checks run deep) and random
bytes as the request body, sent through a generic channel call with identity serializers.

Every answer is OK or one of the documented status codes (`errors.ANSWERED_CODES`: never
INTERNAL or UNKNOWN), and nothing starts a job: ListJobs stays empty and the fake provider,
which every generated teacher URL may point at, is never called.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from distill.client import Distiller
from distill.v1 import gateway_pb2
from services.common.errors import ANSWERED_CODES
from services.gateway.server import build
from tests.fixtures.fake_provider import run_fake_provider
from tests.fixtures.inprocess import serve_in_thread
from tests.fixtures.ports import held_port
from tests.gateway.test_service import GOOD, stageless

SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"]
METHODS = list(SERVICE.methods)
MAX_DEPTH = 4  # JudgeSpec nests itself through composites
_INTS = {FieldDescriptor.TYPE_INT32: 31, FieldDescriptor.TYPE_SINT32: 31,
         FieldDescriptor.TYPE_SFIXED32: 31, FieldDescriptor.TYPE_INT64: 63,
         FieldDescriptor.TYPE_SINT64: 63, FieldDescriptor.TYPE_SFIXED64: 63}
_UINTS = {FieldDescriptor.TYPE_UINT32: 32, FieldDescriptor.TYPE_FIXED32: 32,
          FieldDescriptor.TYPE_UINT64: 64, FieldDescriptor.TYPE_FIXED64: 64}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    with run_fake_provider() as fake, held_port() as port:
        config = stageless(tmp, port, trainer_status_timeout_seconds=1,
                           stage_connect_timeout_seconds=1)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("OPENAI_API_KEY", "sk-test-fuzz")
            with serve_in_thread(config, lambda: build(config)) as address, \
                    Distiller(address) as client, grpc.insecure_channel(address) as channel:
                (tmp / "d.jsonl").write_bytes(GOOD)
                dataset = client.upload(tmp / "d.jsonl")
                yield channel, client, fake, dataset.uri


def _strings(real: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=40), st.sampled_from(real))


def _scalar(field: FieldDescriptor, real: list[str]) -> st.SearchStrategy:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _strings(real)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    if kind == FieldDescriptor.TYPE_ENUM:  # proto3 enums are open: unknown numbers too
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]),
                         st.integers(-3, 100))
    if kind in _INTS:
        bits = _INTS[kind]
        return st.one_of(st.integers(-5, 100), st.integers(-(1 << bits), (1 << bits) - 1))
    return st.integers(0, (1 << _UINTS[kind]) - 1)


def message(descriptor, real: list[str], depth: int = 0) -> st.SearchStrategy:
    """Random messages of `descriptor`'s type: any subset of its fields set."""
    fields = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], \
                field.message_type.fields_by_name["value"]
            if value.message_type is None:
                fields[field.name] = st.dictionaries(_scalar(key, real), _scalar(value, real),
                                                     max_size=3)
            continue
        if field.message_type is not None:
            if depth >= MAX_DEPTH:
                continue
            one = message(field.message_type, real, depth + 1)
        else:
            one = _scalar(field, real)
        fields[field.name] = st.lists(one, max_size=3) if field.is_repeated else one
    cls = GetMessageClass(descriptor)

    def build_message(values: dict) -> object:
        msg = cls()
        for name, value in values.items():
            target = getattr(msg, name) if not isinstance(value, (str, bytes, bool, int, float)) \
                else None
            if isinstance(value, dict):
                target.update(value)
            elif isinstance(value, list):
                target.extend(value)
            elif target is not None:
                target.CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=fields).map(build_message)


def body(method, real: list[str]) -> st.SearchStrategy[bytes]:
    typed = message(method.input_type, real).map(lambda m: m.SerializeToString())
    return st.one_of(typed, st.binary(max_size=256))


def call(channel: grpc.Channel, method, bodies: list[bytes]) -> grpc.StatusCode:
    path = f"/{SERVICE.full_name}/{method.name}"
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}[
        (method.client_streaming, method.server_streaming)]
    request = iter(bodies) if method.client_streaming else bodies[0]
    try:  # no serializers: the bodies go out as they are, the answers come back as bytes
        answer = kind(path)(request, timeout=30)
        if method.server_streaming:
            for _ in answer:
                pass
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_rpc_answers_only_documented_codes_and_starts_no_job(gateway, data):
    channel, client, fake, dataset_uri = gateway
    real = [dataset_uri, fake.openai_base_url, "jobs/missing", "gpt-4o-mini", "datasets/x",
            "x" * 300_000]
    method = data.draw(st.sampled_from(METHODS), label="method")
    count = data.draw(st.integers(0, 3)) if method.client_streaming else 1
    bodies = data.draw(st.lists(body(method, real), min_size=count, max_size=count))
    code = call(channel, method, bodies)
    event(f"{method.name}: {code.name}")  # --hypothesis-show-statistics lists them
    assert code == grpc.StatusCode.OK or code in ANSWERED_CODES, (method.name, code)
    assert fake.stats()["received"] == 0
    assert list(client.list()) == []
