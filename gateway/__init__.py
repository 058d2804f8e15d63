"""Voice Trace Gateway: browser-reported realtime voice sessions in, OpenTelemetry traces out."""

__version__ = "0.1.0"
