#!/usr/bin/env python3
"""Runs the benchmark scenarios and writes bench/results/latest.md.

Called by bench/run.sh after it has installed the tools and built the binaries; see
bench/README.md for what it measures and the BENCH_* variables it reads.
"""

import datetime
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from harness import load, report, scale, scenarios
from harness.certs import openssl_pair
from harness.contenders import all_contenders, endpoint
from harness.procs import Procs, wait_until
from harness.scenarios import log
from harness.settings import Settings


@dataclass
class Context:
    settings: Settings
    procs: Procs
    run_dir: Path
    ecdsa: object = None
    rsa: object = None
    results: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)


def cpu_model():
    model, flags = "?", ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and model == "?":
                model = value
            elif key in ("cpu family", "model") and flags.count(",") < 1:
                flags += f"{key} {value}, "
    return f"{model} ({flags.rstrip(', ')})" if flags else model


def portable(settings, root):
    """The settings with paths relative to the repository, so the committed results say
    nothing of the machine's folders."""
    return {k: str(v.relative_to(root)) if isinstance(v, Path) and v.is_relative_to(root)
            else v for k, v in settings.items()}


def load_average():
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main():
    root = Path(__file__).resolve().parent.parent
    settings = Settings.from_env(root)
    started = time.monotonic()
    load_start = load_average()
    if settings.load_cpu.isdigit():
        # This script's own threads (readers, pollers) stay off the contender's core.
        os.sched_setaffinity(0, {int(settings.load_cpu)})
    given = os.environ.get("BENCH_RUN_DIR")
    run_dir = Path(given) if given else Path(tempfile.mkdtemp(prefix="portcullis-bench-"))
    procs = Procs(run_dir)
    ctx = Context(settings, procs, run_dir)
    log(f"working in {run_dir}; scenarios: {', '.join(settings.scenarios)}"
        f"{' (quick mode)' if settings.quick else ''}")

    backend_addrs = ",".join(endpoint(i) for i in range(3))
    procs.spawn([settings.tools, "backend", "--listen", backend_addrs],
                cpu=settings.load_cpu, log=run_dir / "backend.log")
    def backend_up():
        try:
            socket.create_connection(("127.0.0.1", 19101), timeout=0.5).close()
            return True
        except OSError:
            return False
    if not wait_until(backend_up, 10):
        sys.exit("bench: the backend did not start")

    ctx.ecdsa = openssl_pair(run_dir / "certs", "ecdsa", "ecdsa")
    ctx.rsa = openssl_pair(run_dir / "certs", "rsa", "rsa")
    contenders = all_contenders(settings, procs, run_dir)
    wanted = settings.scenarios
    tls = {}

    def attempt(key, fn):
        try:
            ctx.results[key] = fn()
        except Exception as error:  # one scenario failing must not lose the others
            traceback.print_exc()
            ctx.problems.append(f"`{key}` did not complete: {error}")
            for c in contenders:
                c.stop()

    def start_all(cert):
        for c in contenders:
            c.start(cert, [endpoint(0)])

    ecdsa_paired = [k for k in ("keepalive", "h2", "latency", "big", "handshake-ecdsa")
                    if k in wanted]
    if ecdsa_paired:
        attempt("start", lambda: start_all(ctx.ecdsa))
        ctx.results.pop("start", None)
        for c in contenders:
            if c.proc is not None:
                tls[c.name] = scenarios.tls_details(c)
        for key in ecdsa_paired:
            attempt(key, lambda: scenarios.paired(ctx, scenarios.PAIRED[key], contenders))
    if "handshake-rsa" in wanted:
        def rsa():
            start_all(ctx.rsa)
            return scenarios.paired(ctx, scenarios.PAIRED["handshake-rsa"], contenders)
        attempt("handshake-rsa", rsa)
    for c in contenders:
        c.stop()
    if "idle" in wanted:
        attempt("idle", lambda: scenarios.idle_rss(ctx, contenders))
    if "propagation" in wanted:
        attempt("propagation", lambda: scenarios.propagation(ctx, contenders))
    if "churn" in wanted:
        attempt("churn", lambda: scenarios.churn(ctx, contenders))
    if "scale" in wanted:
        attempt("scale", lambda: scale.scale(ctx))
    procs.stop_all()

    note = settings.note or (
        "the load averages above say how busy the machine was; on a shared 2-core machine "
        "absolute figures are noisy and the ratios, taken inside each round, are the "
        "figures to read.")
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(), "cores": os.cpu_count(), "kernel": platform.release(),
        "load_start": load_start, "load_end": load_average(), "note": note,
        "settings": settings, "elapsed_min": (time.monotonic() - started) / 60,
        "versions": {c.name: c.version() for c in contenders},
        "tools": load.tool_versions(), "tls": tls, "problems": ctx.problems,
    }
    markdown = report.render(meta, ctx.results)
    print(markdown)
    out = root / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(markdown)
    (out / "latest.json").write_text(json.dumps(
        {"meta": {k: v for k, v in meta.items() if k != "settings"},
         "settings": portable(vars(settings), root), "results": ctx.results},
        indent=1, default=str))
    log(f"wrote {out / 'latest.md'}")
    if os.environ.get("BENCH_KEEP_RUN_DIR"):
        log(f"kept {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 1 if ctx.problems else 0


if __name__ == "__main__":
    sys.exit(main())
