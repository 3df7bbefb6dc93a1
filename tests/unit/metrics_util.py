"""The Prometheus text a controller's metrics endpoint serves, for the metrics tests."""

import urllib.request

from prometheus_client import CollectorRegistry


def scrape(app) -> str:
    from p4cs.controller.metrics import start_metrics
    server, thread = start_metrics(app, 0, registry=CollectorRegistry())
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return r.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
