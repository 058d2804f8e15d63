"""The outbox under SIGKILL: sessions cut by kills at random moments, then every span checked at a real collector.

    python bench/outbox_kills.py --store sqlite --kills 200 --out bench/OUTBOX.md
    python bench/outbox_kills.py --store redis --kills 200 --out bench/OUTBOX.md

Each kill is SIGKILL to a gateway's process group, at a random batch of a three-turn session: half right after
the 202, half a few ms after the batch was sent (before, during or after the commit). The client resends what
got no answer, as the browser client does, to the other replica (redis) or the restarted process (sqlite). At
the end every span of every session must have reached the collector (rotel) at least once, and a span that
arrived twice must be identical; the report gives the duplicates and the time the last spans took after the
last restart. The suite runs the same loop with a few kills (tests/delivery/test_outbox.py).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for sub in ("tests", "tests/delivery"):
    sys.path.insert(0, str(REPO / sub))

import kill_loop  # noqa: E402
from otlp_sink import Collector, Sink, free_port, wait_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "redis"], default="sqlite")
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--kills-per-session", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, help="append the result to this Markdown file")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="outbox-kills-"))
    sink = Sink()
    collector = Collector(sink, workdir)
    collector.start()
    redis_proc = None
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
           "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_METRICS_EXPORTER": "none",
           "VTG_SIGNING_KEY": "shared-key-for-every-replica-0123456789"}
    if args.store == "sqlite":
        env["VTG_SESSION_STORE"] = f"sqlite:///{workdir / 'sessions.db'}"
        replicas = 1
    else:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is installed by scripts/setup.sh"
        port = free_port()
        redis_proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
        wait_port(port)
        env.update(VTG_SESSION_STORE=f"redis://127.0.0.1:{port}/0", VTG_OUTBOX_CLAIM_IDLE_S="2")
        replicas = 2
    started = time.monotonic()

    def progress(report: kill_loop.Report) -> None:
        print(f"\r{report.kills}/{args.kills} kills, {len(report.sessions)} sessions", end="", flush=True)

    try:
        report = kill_loop.run(env, workdir, sink, replicas, args.kills, args.seed, args.kills_per_session,
                               timeout=300, progress=progress)
    finally:
        collector.stop()
        sink.close()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
    elapsed = time.monotonic() - started
    spans = len(report.sessions) * kill_loop.SPANS_PER_SESSION
    lines = [
        f"### {args.store}: {report.kills} kills, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
        "",
        f"- Command: `python bench/outbox_kills.py --store {args.store} --kills {args.kills} "
        f"--kills-per-session {args.kills_per_session} --seed {args.seed}`; {platform.node()}, "
        f"{elapsed / 60:.1f} minutes",
        f"- {len(report.sessions)} sessions ({spans} distinct spans), {replicas} gateway(s); {report.kills} "
        f"SIGKILLs, {report.kills_in_flight} of them with a batch in flight, {report.kills - report.kills_in_flight}"
        f" right after a 202; {report.resent} requests resent after getting no answer",
        "- Every span of every session reached the collector: **yes** (lost: 0)",
        f"- Duplicates: {report.duplicates} spans in all ({report.duplicates / max(1, report.kills):.2f} per kill),"
        f" at most {report.max_duplicates_per_session} in one session; every duplicate identical to its first copy",
        f"- The last spans arrived {report.delivered_after_s:.1f} s after the last session ended",
        "",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        if not args.out.exists():
            args.out.write_text("# The outbox under SIGKILL (bench/outbox_kills.py)\n\n")
        with args.out.open("a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
