"""The read API room: the server (:mod:`.server`, run by the collector) and the one client every CLI command uses
(:mod:`.client`). Importing the client does not import the server (nor uvicorn)."""
