"""Which engine-metric source an engine gets (engine/source.choose): vLLM's registry takes our stat logger out of
vLLM's logger list (no call of ours per engine step); every case the registry cannot serve keeps it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from opentelemetry.instrumentation.vllm.engine import source
from opentelemetry.instrumentation.vllm.engine.source import RegistrySource, choose, snapshot_interval_s

pytestmark = pytest.mark.engine


class PrometheusStatLogger:  # what vLLM's is called; choose() recognises it by name (feature, not import path)
    pass


@pytest.fixture()
def fresh(monkeypatch):
    src = RegistrySource()
    src.bridge.installed = 1  # as after instrument() on an SDK provider
    monkeypatch.setattr(source, "SOURCE", src)
    monkeypatch.delenv("OTEL_INSTRUMENTATION_VLLM_ENGINE_METRICS_FROM_REGISTRY", raising=False)
    return src


def _engine(*loggers, lora=None):
    config = SimpleNamespace(lora_config=lora, model_config=SimpleNamespace(served_model_name="m", model="/p"))
    return SimpleNamespace(vllm_config=config, logger_manager=SimpleNamespace(stat_loggers=list(loggers)))


def _ours():
    from opentelemetry.instrumentation.vllm.engine.stat_logger import VLLMOtelStatLogger
    from opentelemetry.instrumentation.vllm.engine.table import EngineInfo

    lg = VLLMOtelStatLogger.__new__(VLLMOtelStatLogger)  # no vllm_config: only what choose() reads
    lg.info, lg.model = EngineInfo(model="m"), "m"
    return lg


def test_registry_takes_our_logger_out(fresh):
    prom, ours = PrometheusStatLogger(), _ours()
    engine = _engine(ours, prom)
    assert choose(engine) is True
    assert engine.logger_manager.stat_loggers == [prom] and ours.info.bridged
    assert fresh.active and fresh.model == "m"


@pytest.mark.parametrize("case", ["lora", "no_prometheus", "env_off", "no_seam", "no_logger_list"])
def test_cases_the_registry_cannot_serve_keep_the_stat_logger(fresh, monkeypatch, case):
    prom, ours = PrometheusStatLogger(), _ours()
    engine = _engine(ours, prom, lora=SimpleNamespace(max_loras=2) if case == "lora" else None)
    if case == "no_prometheus":
        engine.logger_manager.stat_loggers = [ours]
    if case == "env_off":
        monkeypatch.setenv("OTEL_INSTRUMENTATION_VLLM_ENGINE_METRICS_FROM_REGISTRY", "false")
    if case == "no_seam":
        fresh.bridge.installed = 0
    if case == "no_logger_list":
        engine.logger_manager = None
    before = None if engine.logger_manager is None else list(engine.logger_manager.stat_loggers)
    assert choose(engine) is False
    assert (None if engine.logger_manager is None else engine.logger_manager.stat_loggers) == before
    assert not ours.info.bridged and not fresh.active


def test_second_api_server_exports_none_of_the_set(fresh):
    prom, ours = PrometheusStatLogger(), _ours()
    engine = _engine(ours, prom)
    assert choose(engine, client_index=1) is True
    assert engine.logger_manager.stat_loggers == [prom] and not fresh.active  # client 0 exports every server's total


def test_paused_source_exports_nothing_and_resumes(fresh):
    fresh.activate("m")
    fresh.pause()
    assert fresh.points() is None and fresh.send_snapshot() is False
    fresh.resume()
    assert fresh.points() is not None  # the registry now (no child in this process)


@pytest.mark.parametrize("raw,expect", [(None, 30.0), ("1000", 0.5), ("100", 0.5), ("5000", 2.5), ("nan", 30.0),
                                        ("-5", 30.0), ("0", 30.0), ("x", 30.0), ("1e400", 30.0), ("120000", 30.0)])
def test_snapshot_interval_follows_the_export_interval(raw, expect):
    env = {} if raw is None else {"OTEL_METRIC_EXPORT_INTERVAL": raw}
    assert snapshot_interval_s(env) == expect
