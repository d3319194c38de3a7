"""Collector ingest throughput, stage by stage and end to end, into embedded ClickHouse (chDB).

Spans are made by the OpenTelemetry SDK (GenAI-like attributes: model, token counts, finish reasons, TTFT, one
first-token event) and encoded by the SDK's OTLP encoder, 512 spans per request (the BatchSpanProcessor default).
Throughput is spans per CPU-second of this process (``spans / process CPU time``, all threads, i.e. per core, the
unit of the issue's 137k spans/s target) and per wall second. Every round runs every stage once (A/B interleaved,
so all stages see the same machine load); medians over rounds, with min/max. Stages: ``parse`` (upb, reference
point); ``convert_python`` (the reference converter) vs ``convert_c`` (the C hot path); ``insert_null`` (ClickHouse
reading our Native blocks into a Null table: the database's parse work), ``insert`` (into ``otel_traces``) and
``storage_floor`` (``INSERT ... SELECT`` of the same rows already in ClickHouse: the storage engine's own work, no
parsing); ``pipeline_python`` / ``pipeline`` (accept → spool with fsync → batch → insert, Python vs C converter);
``grpc`` (OTLP/gRPC end to end: 4 client threads in a separate process, the collector process's CPU is counted) and
``grpc_null`` (the same with ``otel_traces`` a Null table: the collector's own cost with the storage engine's work
taken out, which is what the OpenTelemetry Collector's published per-core figure measures — its database runs
elsewhere; ClickHouse still parses every Native block, so this is conservative). ``collector_only`` is derived per
round: spans / (CPU of ``grpc_null`` − CPU of ``insert_null`` for the same spans), i.e. with the engine's parse of our
blocks taken out as well.

Run: ``python -m bench.collector.ingest [--smoke]``; writes ``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time

TARGET_SPANS_PER_CORE_S = 137_000  # OpenTelemetry Collector's published per-core figure (issue 4)


def make_bodies(n_requests: int, spans_per_request: int = 512) -> list[bytes]:
    """Encoded ``ExportTraceServiceRequest`` bodies made by the OTel SDK."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "vllm", "host.name": "bench"}))
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tp.get_tracer("opentelemetry.instrumentation.vllm", "0.1.0")
    bodies = []
    for r in range(n_requests):
        exporter.clear()
        for i in range(spans_per_request):
            with tracer.start_as_current_span("chat smollm2", attributes={
                "gen_ai.request.model": "smollm2", "gen_ai.usage.input_tokens": 20 + i % 50,
                "gen_ai.usage.output_tokens": 64, "gen_ai.response.finish_reasons": ("stop",),
                "gen_ai.server.time_to_first_token": 0.05 + (i % 7) / 100}) as span:
                span.add_event("vllm.first_token", {"gen_ai.token.index": 0})
        bodies.append(encode_spans(exporter.get_finished_spans()).SerializeToString())
    return bodies


def _measure(fn, spans: int) -> dict:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"spans": spans, "cpu_s": cpu, "wall_s": wall, "per_cpu_s": spans / cpu if cpu else None,
            "per_wall_s": spans / wall if wall else None}


STAGES = ("parse", "convert_python", "convert_c", "insert_null", "insert", "storage_floor", "pipeline_python",
          "pipeline", "grpc", "grpc_null")


def run(smoke: bool = False, rounds: int | None = None) -> dict:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from vllm_otel_collector.collector import Collector
    from vllm_otel_collector.config import load_config
    from vllm_otel_collector.otlp.traces import traces_from_bytes
    from vllm_otel_collector.otlp.native import AVAILABLE, convert_traces_fast
    from vllm_otel_collector.store import Store, migrate

    if not AVAILABLE:
        raise SystemExit("the collector's C extension is not built (make install)")
    rounds = rounds or (1 if smoke else 3)
    n_req = 4 if smoke else 80
    bodies = make_bodies(n_req)
    spans = 512 * n_req
    tmp = tempfile.mkdtemp(prefix="vllm-otel-bench-")
    dsn = f"chdb://{tmp}/clickhouse"
    store = Store(dsn, database="bench_insert")
    migrate(store, max_version=99)
    store.command("CREATE TABLE otel_traces_null AS otel_traces ENGINE = Null")
    store.command("CREATE TABLE otel_traces_copy ENGINE = Memory AS SELECT * FROM otel_traces WHERE 0")
    fast = [convert_traces_fast(b) for b in bodies]
    per = 40  # 20,480-row inserts, as the pipeline's default batch_rows (20,000) gives
    blocks = [(b"".join(f.block for f in fast[i:i + per]), sum(f.rows for f in fast[i:i + per]))
              for i in range(0, len(fast), per)]
    store.insert_native("otel_traces_copy", b"".join(f.block for f in fast), spans)
    samples: dict[str, list[dict]] = {k: [] for k in STAGES}
    bodies_file = f"{tmp}/bodies.bin"
    with open(bodies_file, "wb") as fh:
        for b in bodies:
            fh.write(len(b).to_bytes(4, "little") + b)

    def collector(r: int, name: str, **fields):
        cfg = load_config(None, clickhouse=dsn, database=f"bench_{name}_{r}", data_dir=f"{tmp}/{name}{r}",
                          grpc_listen="127.0.0.1:0", http_listen="off", api_listen="off", load_analytics=False,
                          flush_interval_s=0.2, **fields)
        c = Collector(cfg).start()
        if name.endswith("null"):  # the storage engine's work taken out: otel_traces discards, no lookup view
            c.store.command("DROP VIEW otel_traces_trace_id_ts_mv")
            c.store.command("DROP TABLE otel_traces")
            c.store.command("CREATE TABLE otel_traces AS bench_insert.otel_traces ENGINE = Null")
        return c

    def pipeline(c):
        for b in bodies:
            c.pipeline.accept_traces(b)
        c.pipeline.drain(600)

    for r in range(rounds):
        samples["parse"].append(_measure(lambda: [ExportTraceServiceRequest.FromString(b) for b in bodies], spans))
        samples["convert_python"].append(_measure(lambda: [traces_from_bytes(b) for b in bodies], spans))
        samples["convert_c"].append(_measure(lambda: [convert_traces_fast(b) for b in bodies], spans))
        samples["insert_null"].append(_measure(
            lambda: [store.insert_native("otel_traces_null", b, n) for b, n in blocks], spans))
        samples["insert"].append(_measure(lambda: [store.insert_native("otel_traces", b, n) for b, n in blocks], spans))
        samples["storage_floor"].append(_measure(
            lambda: store.command("INSERT INTO otel_traces SELECT * FROM otel_traces_copy"), spans))
        for stage, name, fields in (("pipeline_python", "py", {"native_converter": False}), ("pipeline", "c", {}),
                                    ("grpc", "grpc", {}), ("grpc_null", "grpcnull", {})):
            c = collector(r, name, **fields)
            if stage.startswith("grpc"):
                samples[stage].append(_measure(lambda: (_grpc_client_process(c.grpc_port, bodies_file),
                                                        c.pipeline.drain(600)), spans))
            else:
                samples[stage].append(_measure(lambda: pipeline(c), spans))
            c.stop()
    summary = {}
    for stage, runs in samples.items():
        per_cpu = [s["per_cpu_s"] for s in runs if s["per_cpu_s"]]
        per_wall = [s["per_wall_s"] for s in runs if s["per_wall_s"]]
        summary[stage] = {"spans_per_cpu_s": statistics.median(per_cpu), "min": min(per_cpu), "max": max(per_cpu),
                          "spans_per_wall_s": statistics.median(per_wall)}

    def ratio(a: str, b: str) -> float:
        return statistics.median(x["per_cpu_s"] / y["per_cpu_s"] for x, y in zip(samples[a], samples[b]))

    ratios = {"convert_c_vs_python": ratio("convert_c", "convert_python"),
              "pipeline_c_vs_python": ratio("pipeline", "pipeline_python")}
    only = [spans / (g["cpu_s"] - n["cpu_s"]) for g, n in zip(samples["grpc_null"], samples["insert_null"])
            if g["cpu_s"] > n["cpu_s"]]
    if only:
        summary["collector_only"] = {"spans_per_cpu_s": statistics.median(only), "min": min(only), "max": max(only),
                                     "spans_per_wall_s": None}

    def target(measured: float | None) -> dict:
        return {"target": TARGET_SPANS_PER_CORE_S, "measured": measured,
                "met": measured is not None and measured >= TARGET_SPANS_PER_CORE_S}

    return {"name": "ingest", "smoke": smoke, "samples": samples, "summary": summary, "ratios": ratios,
            "method": __doc__.split("\n\n")[1].replace("\n", " "),
            "targets": {
                "collector_only_spans_per_core_s": target(summary.get("collector_only", {}).get("spans_per_cpu_s")),
                "grpc_null_spans_per_core_s": target(summary["grpc_null"]["spans_per_cpu_s"]),
                "grpc_all_in_embedded_spans_per_core_s": target(summary["grpc"]["spans_per_cpu_s"])}}


def _grpc_client_process(port: int, bodies_file: str) -> None:
    """Send the length-prefixed bodies of ``bodies_file`` from a separate process (its CPU is not the collector's)."""
    import subprocess

    subprocess.run([sys.executable, "-m", "bench.collector.ingest", "--client", str(port), bodies_file], check=True)


def _read_bodies(path: str) -> list[bytes]:
    data, out, pos = open(path, "rb").read(), [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "little")
        out.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out


def _grpc_load(port: int, bodies: list[bytes], threads: int = 4) -> None:
    """Send ``bodies`` over OTLP/gRPC from ``threads`` client threads, retrying on UNAVAILABLE (push back)."""
    import grpc

    from vllm_otel_collector.receivers.grpc_receiver import TRACE_SERVICE

    def worker(part):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            call = ch.unary_unary(f"/{TRACE_SERVICE}/Export")
            for body in part:
                while True:
                    try:
                        call(body, timeout=60)
                        break
                    except grpc.RpcError as exc:
                        if exc.code() != grpc.StatusCode.UNAVAILABLE:
                            raise
                        time.sleep(0.05)

    ts = [threading.Thread(target=worker, args=(bodies[i::threads],)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run (seconds) to check the script works")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--client", nargs=2, metavar=("PORT", "BODIES_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:  # the load generator of the grpc stages, in its own process
        _grpc_load(int(args.client[0]), _read_bodies(args.client[1]))
        return 0
    result = run(smoke=args.smoke, rounds=args.rounds)
    try:
        from bench.common import environment, write_result

        result["environment"] = environment()
        path = write_result("ingest" + ("-smoke" if args.smoke else ""), result)
        print(f"wrote {path}", file=sys.stderr)
    except ImportError:
        pass
    for stage, s in result["summary"].items():
        wall = f"; {s['spans_per_wall_s']:,.0f} spans/s wall" if s["spans_per_wall_s"] else ""
        print(f"{stage:>15}: {s['spans_per_cpu_s']:>10,.0f} spans per CPU-second (min {s['min']:,.0f}, "
              f"max {s['max']:,.0f}){wall}")
    for name, value in result["ratios"].items():
        print(f"{name}: {value:.2f}x (median of per-round ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
