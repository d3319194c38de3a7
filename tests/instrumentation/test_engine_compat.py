"""A vLLM whose patch target changed (here: a parameter renamed before ``instrument()``, as a release would): the
feature that needs it is left out — nothing of it patched, inference identical to uninstrumented, one warning, one
count — and the rest is instrumented. Also: every feature's needs are met by the installed vLLM at run time."""

from __future__ import annotations

import logging

import pytest

from opentelemetry.instrumentation.vllm import compat, semconv as sc

pytestmark = pytest.mark.engine


def test_every_feature_is_met_by_the_live_vllm(offline_llm):
    from opentelemetry.instrumentation.vllm.hooks.patcher import Patcher

    Patcher()  # a new generation checks afresh
    assert {f: compat.live_problems(f) for f in compat.FEATURES if compat.live_problems(f)} == {}


def test_a_changed_target_leaves_its_feature_out_and_inference_untouched(offline_llm, otel, caplog):
    import vllm
    from vllm.v1.engine.output_processor import OutputProcessor

    params = vllm.SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True)
    prompts = ["the same question", "another one"]
    def ours(exporter):
        return [s for s in exporter.get_finished_spans() if s.name.startswith(("text_completion", "chat"))]

    otel.inst.uninstrument()
    original = OutputProcessor.__dict__["_update_stats_from_finished"]  # vLLM's own (uninstrumented)

    def changed(self, state, reason, stats):  # a release renamed the parameters
        return original(self, state, reason, stats)

    try:
        plain = [o.outputs[0].token_ids for o in offline_llm.generate(prompts, params)]
        OutputProcessor._update_stats_from_finished = changed
        before = len(ours(otel.exporter))
        with caplog.at_level(logging.WARNING, logger="opentelemetry.instrumentation.vllm"):
            otel.inst.instrument(tracer_provider=otel.tp, meter_provider=otel.mp)
            got = [o.outputs[0].token_ids for o in offline_llm.generate(prompts, params)]
            offline_llm.generate(prompts, params)
        assert got == plain  # inference identical to uninstrumented
        assert len(ours(otel.exporter)) == before  # no request span: that feature is out
        warnings = [r.getMessage() for r in caplog.records if "not instrumented on this vLLM" in r.getMessage()]
        assert len(warnings) == 1 and "request spans" in warnings[0] and "'req_state'" in warnings[0], warnings
        assert not hasattr(OutputProcessor.__dict__["add_request"], "__wrapped__")  # its sibling left unpatched
        errors = [p for p in _points(otel.reader, sc.METRIC_HOOK_ERRORS) if p.attributes.get("hook") == "compat"]
        assert sum(p.value for p in errors) >= 1
    finally:
        otel.inst.uninstrument()
        OutputProcessor._update_stats_from_finished = original
        otel.inst.instrument(tracer_provider=otel.tp, meter_provider=otel.mp)
    before = len(ours(otel.exporter))
    offline_llm.generate(prompts, params)
    assert len(ours(otel.exporter)) == before + 2  # restored: instrumented again


def _points(reader, name):
    data = reader.get_metrics_data()
    return [p for rm in (data.resource_metrics if data else ()) for sm in rm.scope_metrics for m in sm.metrics
            if m.name == name for p in m.data.data_points]


def test_a_request_released_without_a_finish_ends_as_an_error(offline_llm, otel, monkeypatch):
    """vLLM 0.33's error output, driven on the installed OutputProcessor with 0.33's calls: ``_finish_request`` and no
    ``_update_stats_from_finished``. The request span ends as an error (``error.type=request_error``) at the release,
    within a second or two — not a 60 s zombie; normal requests around it end normally."""
    import time

    import vllm
    from opentelemetry.trace import StatusCode

    monkeypatch.setattr(compat, "live_applies", lambda feature: True)  # as where EngineCoreOutput.error exists
    otel.inst.uninstrument()
    otel.inst.instrument(tracer_provider=otel.tp, meter_provider=otel.mp)
    try:
        engine = offline_llm.llm_engine
        external = "rejected-by-a-paused-engine"
        rid = engine.add_request(external, "hello there", vllm.SamplingParams(max_tokens=4))  # the internal id
        op = engine.output_processor
        released = time.time()
        op._finish_request(op.request_states[rid])  # 0.33: error output -> queue.put(exc); _finish_request
        engine.engine_core.abort_requests([rid])  # (the engine side of the test's own request)
        deadline = time.monotonic() + 60
        while not [s for s in otel.exporter.get_finished_spans()
                   if s.attributes.get(sc.VLLM_REQUEST_ID) == external]:
            assert time.monotonic() < deadline, "the released request never ended"
            time.sleep(0.1)
        (span,) = [s for s in otel.exporter.get_finished_spans() if s.attributes.get(sc.VLLM_REQUEST_ID) == external]
        assert span.status.status_code == StatusCode.ERROR and span.attributes["error.type"] == "request_error"
        assert span.attributes[sc.VLLM_FINISH_REASON] == sc.FINISH_ERROR
        assert abs(span.end_time / 1e9 - released) < 0.5  # ended at the release, not at the sweep
        before = len(otel.exporter.get_finished_spans())
        outs = offline_llm.generate(["a normal one"], vllm.SamplingParams(max_tokens=3))
        new = [s for s in otel.exporter.get_finished_spans()[before:] if s.name.startswith("text_completion")]
        assert len(new) == 1 and new[0].status.status_code != StatusCode.ERROR
        assert new[0].attributes[sc.USAGE_OUTPUT_TOKENS] == len(outs[0].outputs[0].token_ids)
    finally:
        monkeypatch.undo()
        otel.inst.uninstrument()
        otel.inst.instrument(tracer_provider=otel.tp, meter_provider=otel.mp)
