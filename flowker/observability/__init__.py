"""Observability (DESIGN §14): log lines (:mod:`.logs`) and Prometheus metrics (:mod:`.metrics`,
:mod:`.metrics_listener`). A shared building block: it imports no layer."""
