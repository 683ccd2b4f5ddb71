"""What operators read: Prometheus metrics and one-line (JSON) logs."""
