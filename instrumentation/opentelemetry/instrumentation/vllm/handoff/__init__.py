"""From the API server to the telemetry: :mod:`.sink` (finished requests and engine steps go to the telemetry child
when it is up, else are written here — the rule once, and the flush chain), :mod:`.wire` (the message format, both
ends), :mod:`.link` (the pipe and the child's lifecycle) and :mod:`.child` (the telemetry process)."""
