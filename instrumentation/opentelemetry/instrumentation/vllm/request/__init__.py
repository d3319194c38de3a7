"""One request's telemetry, in the order it flows: :mod:`.facts` (what is known: labels, the capture at add, the span
plan, the finished request's summary — no SDK), :mod:`.tracker` (in-flight requests, on vLLM's threads; hands
finished ones to a sink), :mod:`.emit` (the one SDK writer, in the server or the telemetry child) and
:mod:`.instruments` (the request metrics)."""
