"""The engine state at a request's arrival (#24): ``vllm.request.arrival.{num_requests_running,num_requests_waiting,
kv_cache_usage}`` — the fact extraction at its boundaries (no stats yet, 0, large, NaN, ±Inf, negative), the wire
round trip to the telemetry child, the tracker's add hook, and the readers on vLLM's real ``PrometheusStatLogger``
(its gauges after its own ``record()``) and on our stat logger (engine-marked: a real ``VllmConfig``)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.engine.arrival import EngineState, attach
from opentelemetry.instrumentation.vllm.handoff import wire
from opentelemetry.instrumentation.vllm.request.facts import arrival_attrs, build_plan

from test_unit_request import T0, _capture, _processor, _request, _state, _tracker  # noqa: E402

ARRIVAL = (sc.VLLM_ARRIVAL_RUNNING, sc.VLLM_ARRIVAL_WAITING, sc.VLLM_ARRIVAL_KV_CACHE_USAGE)


def _arrival(plan) -> dict:
    return {k: v for k, v in plan.attrs.items() if k in ARRIVAL}


@pytest.mark.parametrize("state,expected", [
    (None, {}),  # vLLM had delivered no scheduler stats yet: absent, never 0
    ((0, 0, 0.0), {sc.VLLM_ARRIVAL_RUNNING: 0, sc.VLLM_ARRIVAL_WAITING: 0, sc.VLLM_ARRIVAL_KV_CACHE_USAGE: 0.0}),
    ((1.0, 3.0, 0.25), {sc.VLLM_ARRIVAL_RUNNING: 1, sc.VLLM_ARRIVAL_WAITING: 3,  # gauge floats → ints
                        sc.VLLM_ARRIVAL_KV_CACHE_USAGE: 0.25}),
    ((2**62, 10**6, 1.0), {sc.VLLM_ARRIVAL_RUNNING: 2**62, sc.VLLM_ARRIVAL_WAITING: 10**6,
                           sc.VLLM_ARRIVAL_KV_CACHE_USAGE: 1.0}),
    ((2, 0, math.nan), {sc.VLLM_ARRIVAL_RUNNING: 2, sc.VLLM_ARRIVAL_WAITING: 0}),  # NaN usage: absent
    ((math.inf, -1, 1.5), {}),  # not a count, not a count, not a fraction
    ((2**63, math.nan, -0.1), {}),
    ((1.5, True, math.inf), {}),  # not whole, a bool, infinite
])
def test_arrival_attributes_at_their_boundaries(state, expected):
    plan = build_plan(_capture(engine_state=state), sc.OP_CHAT, "m")
    assert _arrival(plan) == expected
    assert all(type(plan.attrs[k]) is int for k in ARRIVAL[:2] if k in plan.attrs)
    # the same through the wire, as the telemetry child derives it
    entry = SimpleNamespace(states=[_state("x")], reasons=["stop"], arrival=T0, operation="chat", model="m",
                            prefill_stats=None, capture=_capture(engine_state=state))
    record = wire.loads(wire.dumps((wire.REQUESTS, [wire.request_record(entry, T0 + 1, "stop", None)])))[1][0]
    _, child_plan, _ = wire.read_request(record)
    assert _arrival(child_plan) == expected


def test_a_malformed_state_is_a_malformed_record():
    with pytest.raises((ValueError, TypeError)):
        arrival_attrs((1, 2))


def test_the_add_hook_reads_the_requests_engine():
    """``data_parallel_rank`` picks the engine when this frontend has it; else the first engine."""
    seen = []

    def reader(value):
        def read():
            seen.append(value)
            return value
        return read

    engines = EngineState({1: reader((1, 0, 0.5)), 0: reader((0, 2, 0.25)), 3: reader(None)})
    assert engines.read(None) == (0, 2, 0.25) and engines.read(7) == (0, 2, 0.25)  # unknown: the first (0)
    assert engines.read(1) == (1, 0, 0.5) and engines.read(3) is None
    assert EngineState({}).read(0) is None

    tracker, sink = _tracker()
    processor = _processor({"a": _state("a"), "b": _state("b"), "c": _state("c")})
    processor._otel_arrival = engines
    routed = _request("a")
    routed.data_parallel_rank = 1
    tracker.on_add(processor, routed, None, None)
    tracker.on_add(processor, _request("b"), None, None)  # a request without the field (older vLLM): the first
    del processor._otel_arrival  # an engine without readers (vLLM lacks what they read): absent
    tracker.on_add(processor, _request("c"), None, None)
    for rid in "abc":
        tracker.finish(rid, "stop", T0 + 1)
    caps = {e.capture.request_id: e.capture.engine_state for e, *_ in sink.submitted}
    assert caps == {"a": (1, 0, 0.5), "b": (0, 2, 0.25), "c": None}
    tracker.close()


# ---- the readers on vLLM's real loggers ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vllm_config(tiny_model_dir):
    from vllm.engine.arg_utils import EngineArgs

    return EngineArgs(model=str(tiny_model_dir), dtype="float32", max_model_len=256,
                      enforce_eager=True).create_engine_config()


def _sched(running, waiting, skipped, kv):
    from vllm.v1.metrics.stats import SchedulerStats

    return SchedulerStats(num_running_reqs=running, num_waiting_reqs=waiting, num_skipped_waiting_reqs=skipped,
                          kv_cache_usage=kv)


def _engine(loggers):
    return SimpleNamespace(output_processor=SimpleNamespace(), logger_manager=SimpleNamespace(stat_loggers=loggers))


@pytest.mark.engine
def test_vllms_prometheus_gauges_after_its_own_record(vllm_config):
    """What vLLM's PrometheusStatLogger last set on its gauges, per engine; absent until that engine's first stats;
    the one-shot watch of its record() is gone once every engine delivered (nothing of ours per step after)."""
    from vllm.v1.metrics.loggers import PrometheusStatLogger

    prom = PrometheusStatLogger(vllm_config, [0, 1])
    engine = _engine([prom])
    state = attach(engine)
    assert engine.output_processor._otel_arrival is state
    assert state.read(None) is None and state.read(1) is None  # vLLM delivered nothing yet (its gauges say 0)
    prom.record(_sched(0, 0, 0, 0.0), None, engine_idx=0)
    assert state.read(0) == (0.0, 0.0, 0.0) and state.read(1) is None  # delivered 0 is 0; engine 1 not yet
    assert "record" in prom.__dict__
    prom.record(None, None, engine_idx=1)  # a step without scheduler stats delivers nothing
    assert state.read(1) is None
    prom.record(_sched(1, 2, 1, 0.75), None, engine_idx=1)
    assert state.read(1) == (1.0, 3.0, 0.75)  # waiting = waiting + deferred, as vllm:num_requests_waiting
    assert "record" not in prom.__dict__  # the class's record again
    prom.record(_sched(4, 0, 0, math.nan), None, engine_idx=0)  # the latest wins; NaN passes raw, derived absent
    running, waiting, kv = state.read(None)
    assert (running, waiting, math.isnan(kv)) == (4.0, 0.0, True)
    assert arrival_attrs(state.read(None)) == {sc.VLLM_ARRIVAL_RUNNING: 4, sc.VLLM_ARRIVAL_WAITING: 0}


@pytest.mark.engine
def test_our_stat_logger_where_vllms_is_absent(vllm_config):
    """Offline LLM with vLLM's stats off: our logger is the only one; it keeps the latest SchedulerStats."""
    from opentelemetry.instrumentation.vllm.engine.stat_logger import VLLMOtelStatLogger

    class Ours(VLLMOtelStatLogger):
        aggregator = SimpleNamespace(put=lambda item: None)

    ours = Ours(vllm_config, [0])
    state = attach(_engine([ours]))
    assert state.read(None) is None
    ours.record(_sched(2, 5, 1, 0.5), None, engine_idx=0)
    assert state.read(None) == (2, 6, 0.5)
    assert attach(_engine([])) is None  # no logger at all: absent


def test_a_vllm_without_what_the_readers_need_leaves_them_out(monkeypatch, caplog):
    """compat: the feature's needs missing → no readers (attributes absent), one warning, never an exception."""
    from opentelemetry.instrumentation.vllm import compat

    compat.forget()
    monkeypatch.setattr(compat, "live_problems",
                        lambda feature: ["PrometheusStatLogger: attribute(s) gauge_kv_cache_usage missing"]
                        if feature == compat.ARRIVAL_STATE else [])
    engine = _engine([object()])
    with caplog.at_level("WARNING", logger="opentelemetry.instrumentation.vllm"):
        assert attach(engine) is None and attach(_engine([])) is None
    assert engine.output_processor._otel_arrival is None
    assert sum("engine state at arrival not instrumented" in r.getMessage() for r in caplog.records) == 1
    compat.forget()
    # a logger that breaks the reader's assumptions: reported, absent, no exception
    monkeypatch.undo()

    class PrometheusStatLogger:  # vLLM's name, another shape
        gauge_scheduler_running = {0: object()}

    assert attach(_engine([PrometheusStatLogger()])) is None


def test_a_value_holder_without_a_plain_value_is_read_through_its_getter():
    """A prometheus_client whose value holder keeps its number elsewhere: its ``get()`` (under its lock)."""

    class Holder:
        def __init__(self, v):
            self.get = lambda: v

    class PrometheusStatLogger:
        def __init__(self):
            self.gauge_scheduler_running = {0: SimpleNamespace(_value=Holder(2.0))}
            self.gauge_scheduler_waiting = {0: SimpleNamespace(_value=Holder(5.0))}
            self.gauge_kv_cache_usage = {0: SimpleNamespace(_value=Holder(0.5))}

        def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0):
            pass

    prom = PrometheusStatLogger()
    state = attach(_engine([prom]))
    assert state.read(0) is None
    prom.record(object(), None, engine_idx=0)
    assert state.read(0) == (2.0, 5.0, 0.5) and "record" not in prom.__dict__
