"""Collector self-metrics, exposed as Prometheus text at ``/metrics`` of the read API.

One :class:`SelfMetrics` per collector (own registry, so several in-process collectors in tests do not clash).
Counters are per signal (``signal`` label: ``traces`` spans or ``metrics`` data points).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # no *_created series: they only add noise to /metrics


class SelfMetrics:
    """Counters/gauges/histogram; names prefixed ``vllm_otel_collector_``.

    * ``received_total`` items in well-formed requests; ``accepted_total`` items stored in the spool/queue;
      ``rejected_total`` items refused by validation; ``refused_total`` items pushed back (spool/queue full, store
      down); ``written_total`` rows confirmed by ClickHouse (per table); ``retried_total`` insert retries;
      ``forwarded_total`` / ``forward_dropped_total`` items sent to / dropped by the forwarding exporter;
      ``malformed_requests_total`` unparseable bodies; ``dead_lettered_total`` items of requests set aside because
      ClickHouse can never store them (``vllm-otel dead-letters`` lists them); ``trace_requests_total`` trace requests by converter
      (``path``: ``native`` = the C hot path, ``python`` = the reference converter).
    * ``queued_rows`` rows waiting in memory; ``spool_bytes`` bytes in the spool.
    * ``batch_write_seconds`` latency of one batch flush (all its inserts), seconds.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        p = "vllm_otel_collector_"
        r = self.registry
        self.received = Counter(p + "received", "Items received in well-formed requests", ["signal"], registry=r)
        self.accepted = Counter(p + "accepted", "Items accepted (spooled)", ["signal"], registry=r)
        self.rejected = Counter(p + "rejected", "Items rejected by validation", ["signal"], registry=r)
        self.refused = Counter(p + "refused", "Items pushed back with a retryable error", ["signal"], registry=r)
        self.malformed = Counter(p + "malformed_requests", "Requests that could not be decoded", ["signal"],
                                 registry=r)
        self.dead_lettered = Counter(p + "dead_lettered", "Items of requests moved to the dead letters", ["signal"],
                                     registry=r)
        self.trace_requests = Counter(p + "trace_requests", "Trace requests by converter path", ["path"],
                                      registry=r)
        self.written = Counter(p + "written", "Rows confirmed written to ClickHouse", ["table"], registry=r)
        self.retried = Counter(p + "retried", "Insert attempts retried after a failure", registry=r)
        self.processor_errors = Counter(p + "processor_errors", "Processor or periodic job failures", registry=r)
        self.forwarded = Counter(p + "forwarded", "Requests delivered by the forwarding exporter", registry=r)
        self.forward_dropped = Counter(p + "forward_dropped", "Requests dropped by the forwarding exporter",
                                       registry=r)
        self.queued = Gauge(p + "queued_rows", "Rows waiting in the in-memory queue", registry=r)
        self.spool_bytes = Gauge(p + "spool_bytes", "Bytes held in the write-ahead spool", registry=r)
        self.write_latency = Histogram(p + "batch_write_seconds", "Seconds to write one batch", registry=r,
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

    def render(self) -> bytes:
        """Prometheus text exposition (version 0.0.4)."""
        return generate_latest(self.registry)
