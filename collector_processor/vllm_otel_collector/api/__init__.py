"""The read API room: the server (:mod:`.server`) and the one client every CLI command uses (:mod:`.client`).

``RouteHandler`` and ``api_server`` are re-exported from :mod:`.server` for the collector's wiring.
"""

from vllm_otel_collector.api.server import RouteHandler, api_server

__all__ = ["RouteHandler", "api_server"]
