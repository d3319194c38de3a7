"""PNG plots of the benchmark results (matplotlib, Agg backend): one function per benchmark, ``PLOTS[name](result,
out_dir) -> [paths]``."""

from __future__ import annotations

from pathlib import Path


# ---- plots ----------------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Lay out, write (90 dpi) and close ``fig``; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path


def plot_overhead(res: dict, out_dir: Path) -> list[Path]:
    plt = _plt()
    paths = []
    for model, summ in res["summary"].items():
        variants = [v for v in summ if v != "config" and "error" not in summ[v]]
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
        for ax, key, label in ((axes[0], "throughput_ratio", "throughput / uninstrumented"),
                               (axes[1], "ttft_p99_ratio", "TTFT p99 / uninstrumented"),
                               (axes[2], "cpu_us_added_per_request", "frontend CPU µs added / request")):
            med = [summ[v][key]["median"] or 0 for v in variants]
            lo = [m - (summ[v][key]["min"] or 0) for m, v in zip(med, variants)]
            hi = [(summ[v][key]["max"] or 0) - m for m, v in zip(med, variants)]
            ax.bar(variants, med, yerr=[lo, hi], capsize=4, color=["#999", "#2a7", "#37c", "#c73"][:len(variants)])
            ax.set_title(label, fontsize=9)
            if key == "throughput_ratio":
                ax.axhline(0.99, ls="--", c="r", lw=0.8)
            if key == "cpu_us_added_per_request":
                ax.axhline(30, ls="--", c="r", lw=0.8)
        fig.suptitle(f"{res.get('name', 'overhead')} — {model} ({summ['config']['requests_per_round']} requests × "
                     f"{summ['config']['max_tokens']} tokens, {summ['config']['rounds']} rounds; median, min…max)",
                     fontsize=9)
        paths.append(_save(fig, out_dir / f"{res.get('name', 'overhead')}_{model}.png"))
    return paths


def plot_queries(res: dict, out_dir: Path) -> list[Path]:
    plt = _plt()
    summ = res["summary"]
    panels = [k for k in summ if k != "overall"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = list(range(len(panels)))
    ax.bar([i - 0.2 for i in x], [summ[p]["raw_ms"]["p50"] for p in panels], 0.4, label="raw llm_requests")
    ax.bar([i + 0.2 for i in x], [summ[p]["rollup_ms"]["p50"] for p in panels], 0.4,
           label="rollup (dashboard SQL for grafana_*)")
    floors = [10 * (summ[p].get("floor_ms") or {}).get("p50", 0) for p in panels]
    if any(floors):  # issue 24's goal: each panel within 10x the floor measured beside it
        ax.hlines(floors, [i - 0.2 for i in x], [i + 0.2 for i in x], colors="k", lw=1, label="10 × floor (same run)")
    ax.set_xticks(x, panels, fontsize=7, rotation=35, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency, ms (log)")
    ax.legend(fontsize=7)
    ax.set_title(f"dashboard queries over {summ['overall']['rows']:,} requests (chDB via clickhouse-connect)",
                 fontsize=9)
    return [_save(fig, out_dir / "queries.png")]


def plot_storage(res: dict, out_dir: Path) -> list[Path]:
    plt = _plt()
    s = res["summary"]
    labels = ["llm_requests\n(ours, per request)", "+ rollups\n(ours)", "otel_traces\n(stock: 4 spans/request)"]
    vals = [s["llm_requests_bytes_per_request"], s["ours_analytics_bytes_per_request"],
            s["stock_contrib_bytes_per_request"]]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.bar(labels, vals, color=["#2a7", "#7c9", "#999"])
    ax.axhline(100, ls="--", c="r", lw=0.8)
    ax.set_ylabel("compressed bytes per request")
    ax.tick_params(labelsize=8)
    return [_save(fig, out_dir / "storage.png")]


def plot_truth(res: dict, out_dir: Path) -> list[Path]:
    plt = _plt()
    series = {m: [(c - s) * 1000 for _t, s, c, _d in pairs] for m, pairs in res["samples"].items() if pairs}
    if not series:
        return []
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for m, diffs in series.items():
        ax.hist(diffs, bins=30, alpha=0.6, label=m)
    ax.set_xlabel("client TTFT − span TTFT, ms")
    ax.set_ylabel("requests")
    ax.legend(fontsize=8)
    return [_save(fig, out_dir / "truth.png")]


def plot_ingest(res: dict, out_dir: Path) -> list[Path]:
    plt = _plt()
    stages = list(res["summary"])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(stages, [res["summary"][s]["spans_per_cpu_s"] for s in stages], color="#37c")
    ax.axhline(137_000, ls="--", c="r", lw=0.8, label="137k spans/s/core target")
    ax.set_yscale("log")
    ax.set_ylabel("spans per CPU-second")
    ax.legend(fontsize=8)
    return [_save(fig, out_dir / "ingest.png")]


PLOTS = {"analytics_insert": lambda res, out_dir: [], "overhead": plot_overhead, "overhead_served": plot_overhead, "queries": plot_queries, "storage": plot_storage, "truth": plot_truth,
         "ingest": plot_ingest}
