//! Autoscaler: scales model versions from Prometheus or scraped metrics (not built yet; see issue 8).
