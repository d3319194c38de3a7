"""vLLM's engine metric set: :mod:`.table` (the instruments, what an engine exports), :mod:`.facts` (one step's stats
→ plain values → records, pure), :mod:`.aggregator` (the queue the stat logger fills, sums/gauges/histograms on the
SDK) and :mod:`.stat_logger` (vLLM's entry point, on its event loop)."""
