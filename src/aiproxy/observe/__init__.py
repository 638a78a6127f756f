"""Observability: app log files by category, the system-log reader, the monitor, Prometheus metrics."""
