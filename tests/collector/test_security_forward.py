"""Auth, TLS, forwarding to a real OTLP/gRPC receiver, config loading, fuzzed input."""

from __future__ import annotations

import datetime
import threading
from concurrent import futures

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from collector.helpers import TRACE_EXPORT, make_request, make_span
from vllm_otel_collector.config import load_config
from vllm_otel_collector.errors import UserError
from vllm_otel_collector.store import Store


def test_auth_rejects_unauthenticated_grpc_http_and_api(make_collector):
    c = make_collector(auth_token="s3cret")
    body = make_request([make_span("authed")]).SerializeToString()
    with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as ch:
        call = ch.unary_unary(TRACE_EXPORT)
        for md in (None, (("authorization", "Bearer wrong"),)):
            with pytest.raises(grpc.RpcError) as info:
                call(body, timeout=5, metadata=md)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        call(body, timeout=5, metadata=(("authorization", "Bearer s3cret"),))
    url = f"http://127.0.0.1:{c.http_port}/v1/traces"
    headers = {"Content-Type": "application/x-protobuf"}
    assert httpx.post(url, content=body, headers=headers).status_code == 401
    assert httpx.post(url, content=body, headers={**headers, "Authorization": "Bearer nope"}).status_code == 401
    assert httpx.post(url, content=body, headers={**headers, "Authorization": "Bearer s3cret"}).status_code == 200
    api = f"http://127.0.0.1:{c.api_port}"
    assert httpx.get(api + "/metrics").status_code == 401
    assert httpx.get(api + "/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert httpx.get(api + "/healthz").status_code == 200
    assert c.drain(10)
    assert c.store.query("SELECT count() FROM otel_traces").result_rows == [(2,)]


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_round_trip_grpc_and_https(make_collector, tmp_path):
    cert, key = _self_signed(tmp_path)
    c = make_collector(tls_cert=cert, tls_key=key)
    creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(f"localhost:{c.grpc_port}", creds) as ch:
        ch.unary_unary(TRACE_EXPORT)(make_request([make_span("over-tls")]).SerializeToString(), timeout=10)
    r = httpx.post(f"https://localhost:{c.http_port}/v1/traces", verify=str(cert),
                   content=make_request([make_span("over-https")]).SerializeToString(),
                   headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 200
    with pytest.raises(httpx.HTTPError):  # plaintext to a TLS port fails
        httpx.post(f"http://localhost:{c.http_port}/v1/traces", content=b"", timeout=5)
    assert c.drain(10)
    assert c.store.query("SELECT SpanName FROM otel_traces ORDER BY SpanName").result_rows == [
        ("over-https",), ("over-tls",)]


class _Sink:
    """A real OTLP/gRPC TraceService receiver (stands in for Jaeger)."""

    def __init__(self):
        self.requests: list[ExportTraceServiceRequest] = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(2))
        handler = grpc.unary_unary_rpc_method_handler(
            self._export, request_deserializer=ExportTraceServiceRequest.FromString,
            response_serializer=ExportTraceServiceResponse.SerializeToString)
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": handler}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _export(self, request, context):
        with self.lock:
            self.requests.append(request)
        return ExportTraceServiceResponse()


def test_forwarding_delivers_every_span_unchanged(make_collector):
    sink = _Sink()
    try:
        c = make_collector(forward={"endpoint": f"127.0.0.1:{sink.port}"})
        sent = []
        with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as ch:
            call = ch.unary_unary(TRACE_EXPORT)
            for i in range(20):
                req = make_request([make_span(f"fw-{i}-{k}", attr=i, ratio=0.5) for k in range(5)])
                sent.append(req)
                call(req.SerializeToString(), timeout=5)
            bad = make_request([make_span("fw-good"), make_span("fw-bad", span_id=b"\x01")])
            call(bad.SerializeToString(), timeout=5)
        assert c.drain(15)
        got = {s.span_id: s for r in sink.requests for rs in r.resource_spans for ss in rs.scope_spans
               for s in ss.spans}
        want = {s.span_id: s for r in sent for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans}
        want[bad.resource_spans[0].scope_spans[0].spans[0].span_id] = bad.resource_spans[0].scope_spans[0].spans[0]
        assert got == want  # identical protobuf spans; the rejected one was not forwarded
        assert sink.requests[0].resource_spans[0].resource == sent[0].resource_spans[0].resource
    finally:
        sink.server.stop(0)


def test_forwarder_to_dead_endpoint_never_blocks_storage(make_collector):
    c = make_collector(forward={"endpoint": "127.0.0.1:1", "max_queue": 3})
    with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as ch:
        call = ch.unary_unary(TRACE_EXPORT)
        for i in range(10):
            call(make_request([make_span(f"d{i}")]).SerializeToString(), timeout=5)
    assert c.pipeline.drain(10)
    assert c.store.query("SELECT count() FROM otel_traces").result_rows == [(10,)]


def test_config_yaml_env_flags_precedence_and_errors(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("collector:\n  batch_rows: 123\n  database: fromyaml\n  spool:\n    max_bytes: 1000\n")
    monkeypatch.setenv("VLLM_OTEL_COLLECTOR_DATABASE", "fromenv")
    cfg = load_config(path, grpc_listen="127.0.0.1:9999")
    assert (cfg.batch_rows, cfg.database, cfg.spool.max_bytes, cfg.grpc_listen) == (123, "fromenv", 1000,
                                                                                    "127.0.0.1:9999")
    assert load_config(path, database="fromflag").database == "fromflag"
    with pytest.raises(UserError, match="invalid collector setting batch_rows"):
        load_config(None, batch_rows=0)
    with pytest.raises(UserError, match="grpc_listen"):
        load_config(None, grpc_listen="nonsense")
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("collector: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    assert "secret" not in repr(load_config(None, clickhouse="http://u:secret@h:8123/db"))


_span_fields = st.fixed_dictionaries({
    "trace_id": st.binary(max_size=20), "span_id": st.binary(max_size=10), "parent_span_id": st.binary(max_size=10),
    "name": st.text(max_size=30), "kind": st.integers(0, 20), "start_time_unix_nano": st.integers(0, 2**64 - 1),
    "end_time_unix_nano": st.integers(0, 2**64 - 1),
})


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    from vllm_otel_collector.collector import Collector
    from vllm_otel_collector.store.testing import shared_chdb_path

    cfg = load_config(None, clickhouse=f"chdb://{shared_chdb_path()}", database="col_fuzz",
                      data_dir=tmp_path_factory.mktemp("fuzz"), grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0",
                      api_listen="127.0.0.1:0", load_analytics=False, spool={"fsync": False},
                      limits={"max_value_chars": 64, "max_attributes": 8})
    c = Collector(cfg).start()
    assert c.wait_ready(30)
    ch = grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}")
    http = httpx.Client(base_url=f"http://127.0.0.1:{c.http_port}")
    yield c, ch.unary_unary(TRACE_EXPORT), http
    assert http.get(f"http://127.0.0.1:{c.api_port}/healthz").status_code == 200  # still up after the fuzzing
    assert c.readiness()[0]
    ch.close()
    http.close()
    c.stop()
    Store(cfg.dsn, database="col_fuzz").command("DROP DATABASE IF EXISTS col_fuzz", use_database=False)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(st.binary(max_size=300),
                      st.lists(_span_fields, max_size=4).map(
                          lambda spans: make_request([__import__("opentelemetry.proto.trace.v1.trace_pb2",
                                                                 fromlist=["Span"]).Span(**s) for s in spans])
                          .SerializeToString())),
       flip=st.integers(0, 1000), ctype=st.sampled_from(["application/x-protobuf", "application/json"]))
def test_fuzz_every_request_answered_and_collector_stays_up(fuzz_target, body, flip, ctype):
    c, call, http = fuzz_target
    if body and flip < len(body):  # corrupt one byte of an otherwise valid request
        body = body[:flip] + bytes([body[flip] ^ 0xA5]) + body[flip + 1:]
    try:
        call(body, timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc
    r = http.post("/v1/traces", content=body, headers={"Content-Type": ctype})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200 and ctype == "application/x-protobuf":
        ExportTraceServiceResponse.FromString(r.content)


def test_thousands_of_mutated_requests_all_answered(fuzz_target):
    import random

    c, call, http = fuzz_target
    rng = random.Random(1234)
    base = make_request([make_span(f"m{k}", attr="v" * 100, n=k) for k in range(5)]).SerializeToString()
    codes = {}
    for _ in range(3000):
        body = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        if rng.random() < 0.2:
            body = body[: rng.randrange(len(body))]
        try:
            resp = ExportTraceServiceResponse.FromString(call(bytes(body), timeout=10))
            key = "ok-partial" if resp.HasField("partial_success") else "ok"
        except grpc.RpcError as exc:
            key = exc.code().name
        codes[key] = codes.get(key, 0) + 1
    assert sum(codes.values()) == 3000
    assert set(codes) <= {"ok", "ok-partial", "INVALID_ARGUMENT"}, codes
    assert codes.get("INVALID_ARGUMENT", 0) > 100 and codes.get("ok-partial", 0) > 100


def test_example_config_is_valid_and_documents_defaults():
    from pathlib import Path

    import vllm_otel_collector

    example = Path(vllm_otel_collector.__file__).with_name("collector.example.yaml")
    cfg = load_config(example)
    defaults = load_config(None)
    assert cfg.model_dump(exclude={"data_dir"}) == defaults.model_dump(exclude={"data_dir"})
