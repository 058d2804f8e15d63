"""Recording metrics, on the gateway's own registry: what audio costs and how its path fails, apart from events."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class RecordingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.chunks = Counter("vtg_recording_chunks", "Recording chunks taken, by outcome (stored, duplicate)",
                              ["outcome"], registry=registry)
        self.bytes = Counter("vtg_recording_bytes", "Recording bytes stored", registry=registry)
        self.rejected = Counter("vtg_recording_rejected", "Recording uploads refused, by reason", ["reason"],
                                registry=registry)
        self.storage_failures = Counter(
            "vtg_recording_storage_failures", "Object store operations that failed, by operation", ["operation"],
            registry=registry)
        self.langfuse_media = Counter(
            "vtg_recording_langfuse_media",
            "Recordings sent to Langfuse as media, by outcome (published, failed; per turn: turn_published, "
            "turn_failed)", ["outcome"], registry=registry)
        self.deleted = Counter("vtg_recording_deleted", "Recordings deleted, by cause (request, retention)",
                               ["cause"], registry=registry)
