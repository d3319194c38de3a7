"""deploy/: compose files parse, reference files that exist, pin images, and run commands our CLI accepts.

Docker cannot run here (ENV_NOTES.md), so this checks what can be checked without it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from vllm_otel_inference.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


class _ComposeLoader(yaml.SafeLoader):
    """pyyaml plus compose's merge tags (``!reset``, ``!override``)."""


for _tag in ("!reset", "!override"):
    _ComposeLoader.add_constructor(_tag, lambda loader, node: (
        loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node) if isinstance(node, yaml.MappingNode) else loader.construct_scalar(node)))


def _load(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load(DEPLOY / "docker-compose.yml")


@pytest.fixture(scope="module")
def scale() -> dict:
    return _load(DEPLOY / "scale-out" / "docker-compose.scale.yml")


def _bind_sources(services: dict) -> list[str]:
    out = []
    for svc in services.values():
        for vol in svc.get("volumes", []) or []:
            src = vol.split(":")[0]
            if src.startswith((".", "/")):
                out.append(src)
    return out


def test_services_images_and_healthchecks(compose):
    services = compose["services"]
    assert set(services) == {"clickhouse", "collector", "jaeger", "grafana", "vllm", "vllm-cpu"}
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: image not pinned"
        if name != "jaeger":  # the Jaeger v2 image has no shell/HTTP client for a probe
            assert svc["healthcheck"]["test"][0] == "CMD", name
    assert services["vllm"]["profiles"] == ["gpu"] and services["vllm-cpu"]["profiles"] == ["cpu"]
    assert services["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert "grafana-clickhouse-datasource" in services["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    assert re.fullmatch(r"clickhouse/clickhouse-server:\d+\.\d+(\.\d+)*", services["clickhouse"]["image"])


def test_named_volumes_declared_and_bind_mounts_exist(compose, scale, stock):
    for doc in (compose, scale, stock):
        for svc in doc["services"].values():
            for vol in svc.get("volumes", []) or []:
                src = vol.split(":")[0]
                if not src.startswith((".", "/")):
                    assert src in compose["volumes"] or src in (scale.get("volumes") or {}), src
        for src in _bind_sources(doc["services"]):  # every -f file resolves against deploy/
            assert (DEPLOY / src).exists(), src
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DEPLOY / "grafana" / "dashboards" / Path(home).name).is_file()


def test_dockerfiles_exist_and_copy_existing_paths(compose):
    for name, svc in compose["services"].items():
        if "build" not in svc:
            continue
        context = (DEPLOY / svc["build"]["context"]).resolve()
        assert context == REPO, name
        dockerfile = context / svc["build"]["dockerfile"]
        text = dockerfile.read_text()
        for line in text.splitlines():
            if line.startswith("COPY "):
                for src in line.split()[1:-1]:
                    assert (context / src).exists(), f"{dockerfile.name}: COPY {src}"


def test_secrets_come_from_env_file(compose):
    text = (DEPLOY / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert {"CLICKHOUSE_PASSWORD", "GF_ADMIN_PASSWORD", "VLLM_OTEL_API_TOKEN", "VLLM_OTEL_INGEST_TOKEN"} <= required
    example = dict(line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert required <= set(example)
    assert "password" not in " ".join(compose["services"]["collector"]["command"]).lower()
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()


def test_collector_commands_parse_with_our_cli(compose):
    parser = build_parser()
    args = parser.parse_args(compose["services"]["collector"]["command"])
    assert args.command == "collector" and args.func.__name__ == "run_collector"
    assert (args.listen, args.http_listen, args.api_listen) == ("0.0.0.0:4317", "0.0.0.0:4318", "0.0.0.0:4319")
    assert (args.forward, args.data_dir, args.database) == ("jaeger:4317", "/data", "otel")
    dockerfile = (DEPLOY / "collector.Dockerfile").read_text()
    entry = yaml.safe_load(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M)[1])
    cmd = yaml.safe_load(re.search(r"^CMD (.+)$", dockerfile, re.M)[1])
    assert entry == ["vllm-otel"]
    assert parser.parse_args(cmd).command == "collector"
    cpu = (DEPLOY / "vllm-cpu.Dockerfile").read_text()
    prepare = shlex.split(re.search(r"\$\((vllm-otel model prepare[^)]*)\)", cpu)[1])[1:]
    assert parser.parse_args(prepare).dir == Path("/models/cache")


@pytest.mark.engine
def test_vllm_cpu_command_parses_with_vllms_parser(compose):
    pytest.importorskip("vllm")
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    cmd = [c.replace("${CPU_MODEL:-/models/smollm2}", "/models/smollm2")
           for c in compose["services"]["vllm-cpu"]["command"]]
    args = make_arg_parser(FlexibleArgumentParser()).parse_args(cmd)
    assert (args.model, args.port, args.max_model_len) == ("/models/smollm2", 8000, 2048)


@pytest.fixture(scope="module")
def stock() -> dict:
    return _load(DEPLOY / "otelcol" / "docker-compose.otelcol.yml")


def test_stock_pipeline_collector_config(stock, scale):
    """The contrib Collector writes every signal into ClickHouse with the schema vllm-otel migrate owns, batching in
    its sending queue and retrying; no vllm-otel collector in either overlay."""
    cfg = yaml.safe_load((DEPLOY / "otelcol" / "otelcol.yaml").read_text())
    ch = cfg["exporters"]["clickhouse"]
    assert ch["create_schema"] is False and ch["async_insert"] is False
    assert ch["sending_queue"]["batch"]["min_size"] >= 5000 and ch["sending_queue"]["block_on_overflow"] is True
    assert ch["retry_on_failure"]["enabled"] is True and "materialized_views_ignore_errors" not in ch
    assert ch["metrics_tables"]["exponential_histogram"]["name"] == "otel_metrics_exponential_histogram"
    assert ch["metrics_tables"]["summary"]["name"] == "otel_metrics_summary"
    pipes = cfg["service"]["pipelines"]
    assert "clickhouse" in pipes["traces"]["exporters"] and pipes["metrics"]["exporters"] == ["clickhouse"]
    assert cfg["receivers"]["otlp"]["protocols"]["grpc"]["auth"]["authenticator"] == "bearertokenauth"
    parser = build_parser()
    for doc in (stock, scale):
        services = doc["services"]
        assert services["collector"]["profiles"] == ["vllm-otel-collector"]  # not started
        migrate = parser.parse_args(services["migrate"]["command"])
        analyzer = parser.parse_args(services["analyzer"]["command"])
        assert (migrate.command, analyzer.command) == ("migrate", "analyzer")
        assert services["otelcol"]["depends_on"] and services["analyzer"]["deploy"]["replicas"] == 2
    assert parser.parse_args(scale["services"]["migrate"]["command"]).cluster == "llm"
    assert scale["services"]["otelcol"]["environment"]["CLICKHOUSE_DB"] == "otel_all"
    assert parser.parse_args(scale["services"]["analyzer"]["command"]).database == "otel_all"


def test_gateway_routes_by_trace_id(scale):
    gw = yaml.safe_load((DEPLOY / "otelcol" / "gateway.yaml").read_text())
    lb = gw["exporters"]["loadbalancing/traces"]
    assert lb["routing_key"] == "traceID" and lb["resolver"]["dns"]["hostname"] == "otelcol"
    assert gw["service"]["pipelines"]["traces"]["exporters"] == ["loadbalancing/traces"]
    assert scale["services"]["otelcol"]["deploy"]["replicas"] == 2
    assert scale["services"]["vllm"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-gateway:4317"


def test_compose_files_state_the_version_they_need():
    for path in (DEPLOY / "otelcol" / "docker-compose.otelcol.yml", DEPLOY / "scale-out" / "docker-compose.scale.yml"):
        text = path.read_text()
        if "!override" in text or "!reset" in text:
            assert "Compose >= 2.24" in text, path


TABLE_MACROS = {"traces": "otel_traces", "gauge": "otel_metrics_gauge", "sum": "otel_metrics_sum",
                "histogram": "otel_metrics_histogram", "summary": "otel_metrics_summary",
                "exponential_histogram": "otel_metrics_exponential_histogram"}


def test_distributed_tables_cover_every_migrated_table():
    """Every table of every migration (core and analytics) has its otel_all Distributed table: on cluster llm, or on
    llm_one for the tables one replication group holds whole."""
    tables, global_tables = set(), {"schema_migrations"}
    roots = [REPO / "collector_processor" / "vllm_otel_collector" / d / "migrations" for d in ("store", "analytics")]
    for f in (p for root in roots for p in root.glob("*.sql")):
        for stmt in f.read_text().split(";"):
            m = re.search(r"CREATE TABLE IF NOT EXISTS (?:\$\{db\}\.([\w${}]+)|\$\{(\w+)\})", stmt)
            if m:
                name = (m[1] or TABLE_MACROS[m[2]]).replace("${traces_name}", "otel_traces")
                (global_tables if "${global:" in stmt else tables).add(name)
    sql = (DEPLOY / "scale-out" / "clickhouse" / "distributed.sql").read_text()
    dist = {a: c for a, c in re.findall(
        r"CREATE TABLE IF NOT EXISTS otel_all\.(\w+) ON CLUSTER llm AS otel\.\w+ ENGINE = Distributed\((\w+), otel,", sql)}
    assert len(tables) > 10 and not tables - {t for t, c in dist.items() if c == "llm"}, sorted(tables - set(dist))
    assert global_tables == {t for t, c in dist.items() if c == "llm_one"}


@pytest.mark.chdb
def test_distributed_sql_parses():
    """Each statement of distributed.sql is valid ClickHouse SQL (its parser, through chDB's formatQuery)."""
    from vllm_otel_collector.store.testing import fresh_store

    store = fresh_store("deploy_sql", apply_migrations=False)
    try:
        text = "\n".join(line for line in (DEPLOY / "scale-out" / "clickhouse" / "distributed.sql").read_text()
                         .splitlines() if not line.startswith("--"))
        for stmt in filter(None, (s.strip() for s in text.split(";"))):
            assert store.query("SELECT formatQuery({q:String})", parameters={"q": stmt}).result_rows[0][0]
    finally:
        store.command(f"DROP DATABASE IF EXISTS `{store.database}`", use_database=False)
        store.close()


def test_scale_out_guide_references_existing_files():
    guide = (REPO / "docs" / "scale-out.md").read_text()
    paths = set(re.findall(r"`(deploy/[\w./-]+?)`", guide))
    paths |= {f"deploy/scale-out/clickhouse/{n}" for n in re.findall(r"clickhouse/\{([^}]+)\}", guide)[0].split(",")}
    assert len(paths) >= 6
    for p in paths:
        assert (REPO / p).exists(), p
