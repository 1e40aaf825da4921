"""``GET /metrics``: the Prometheus text of every worker's metrics (any authenticated principal).

``flowker serve --metrics-bind HOST:PORT`` serves the same text without a key on a
listener of its own (:mod:`flowker.observability.metrics_listener`), for scrapers on a
private interface.
"""

from __future__ import annotations

from flowker.observability.metrics import CONTENT_TYPE


class MetricsExposition:
    uses_database = False

    def __init__(self, state):
        self.state = state

    def on_get(self, req, resp) -> None:
        self.state.read_queue_depth()  # fresh for this scrape (the sampler's may be seconds old)
        resp.content_type = CONTENT_TYPE
        resp.data = self.state.metrics.exposition()
