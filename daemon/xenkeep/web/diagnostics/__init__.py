"""The diagnostics pages and API: health checks, the log view, the support bundle."""
