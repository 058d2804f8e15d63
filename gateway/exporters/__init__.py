"""Span exporters the gateway registers under the ``opentelemetry_traces_exporter`` entry-point group."""
