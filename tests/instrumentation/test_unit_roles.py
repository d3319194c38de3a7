"""Each process does only what it has something for (roles.py): the role from the interpreter's command line; the
process tree observed once, from the frontend (vLLM's EngineCore/workers are descendants); multiprocessing's
resource tracker, bootstrapped by ``opentelemetry-instrument`` too, keeps no SDK exporter thread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import new_sdk  # noqa: E402  (tests/instrumentation is on sys.path)
from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.host_metrics import register_host_observers
from opentelemetry.instrumentation.vllm.roles import ENGINE, FRONTEND, RESOURCE_TRACKER, process_role

PY = sys.executable


def test_roles_from_the_command_line():
    assert process_role([PY, "-m", "vllm.entrypoints.openai.api_server", "--model", "m"]) == FRONTEND
    assert process_role([PY, "script.py"]) == FRONTEND
    assert process_role([PY, "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5, "
                               "pipe_handle=7)", "--multiprocessing-fork"]) == ENGINE
    assert process_role([PY, "-B", "-c", "from multiprocessing.resource_tracker import main;main(35)"]) == \
        RESOURCE_TRACKER
    assert process_role([PY, "-c"]) == FRONTEND  # a dangling -c is not a role
    assert process_role([]) == FRONTEND
    assert process_role() in (FRONTEND, ENGINE)  # this pytest process


def _points(reader, name):
    data = reader.get_metrics_data()
    return [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics if m.name == name
            for p in m.data.data_points]


def test_the_process_tree_is_observed_from_its_root_each_process_once():
    sdk = new_sdk()
    kid = subprocess.Popen([PY, "-c", "import time; time.sleep(120)"])
    skipped = subprocess.Popen([PY, "-c", "import time; time.sleep(120)"])
    try:
        register_host_observers(sdk.meter, os.getpid(), exclude=frozenset({skipped.pid}))
        rss = {p.attributes[sc.PROCESS_PID]: p for p in _points(sdk.reader, sc.METRIC_PROCESS_RSS)}
        # (pytest's other children, e.g. a session's vLLM engine, are descendants too)
        assert {os.getpid(), kid.pid} <= set(rss) and skipped.pid not in rss
        assert rss[kid.pid].attributes[sc.PROCESS_COMMAND] == os.path.basename(PY)
        assert all(p.value > 1 << 20 for p in rss.values())
        cpu = {p.attributes[sc.PROCESS_PID] for p in _points(sdk.reader, sc.METRIC_PROCESS_CPU)}
        assert {os.getpid(), kid.pid} <= cpu and skipped.pid not in cpu  # primed by the first collection
        kid.kill()
        kid.wait(30)
        rss = {p.attributes[sc.PROCESS_PID] for p in _points(sdk.reader, sc.METRIC_PROCESS_RSS)}
        assert os.getpid() in rss and kid.pid not in rss  # a descendant that exited is forgotten
    finally:
        for p in (kid, skipped):
            p.kill()
            p.wait(30)


def _threads_under_instrument(code: str, tmp_path: Path) -> list[str]:
    script = tmp_path / "probe.py"
    script.write_text("import threading\nprint(','.join(sorted(t.name for t in threading.enumerate())))\n")
    env = dict(os.environ, OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="otlp", OTEL_LOGS_EXPORTER="none",
               OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="fastapi",
               OTEL_INSTRUMENTATION_VLLM_SHUTDOWN_TIMEOUT="1")
    # the role comes from the -c code; the probe runs after the bootstrap (sitecustomize) in the same interpreter
    cmd = [str(Path(PY).parent / "opentelemetry-instrument"), PY, "-c", code + f"\nexec(open({str(script)!r}).read())"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1].split(",")


def test_the_resource_tracker_keeps_no_exporter_threads(tmp_path):
    exporters = {"OtelBatchSpanRecordProcessor", "OtelPeriodicExportingMetricReader"}
    frontend = _threads_under_instrument("import sys", tmp_path)
    assert exporters <= set(frontend)  # the control: the bootstrap started them
    tracker = _threads_under_instrument("# as multiprocessing.resource_tracker is started\nimport sys", tmp_path)
    assert not exporters & set(tracker), tracker
