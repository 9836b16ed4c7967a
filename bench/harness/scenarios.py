"""The measurements. Each returns a plain dict that report.py turns into Markdown.

Throughput-style scenarios run in rounds: every contender once per round, the order
reversed every other round (P N H, H N P, ...), after a warm-up. Ratios are taken inside
a round (each peer against the Portcullis run next to it), and the median, min and max
of those ratios are reported. A scenario whose ratios spread more than
BENCH_MAX_SPREAD (5 %) is run once more, and the second set is reported.
"""

import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable

from . import load
from . import procs as P
from .certs import HOST, bulk_pairs
from .contenders import endpoint, https_get, max_idle_connections


def log(message):
    print(f"bench: {message}", flush=True)


# ---------------------------------------------------------------------------------------
# Paired throughput scenarios


@dataclass
class Paired:
    key: str
    title: str
    run: Callable               # (ctx, contender, seconds) -> load result dict
    metric: str                 # the figure ratios are taken of
    peer_over_portcullis: bool  # True for costs (efficiency = peer / Portcullis)
    unit: str


def measure(ctx, contender, run, seconds):
    """One load run against a contender, with the contender's CPU time around it."""
    cpu0 = contender.cpu_seconds()
    result = run(ctx, contender, seconds)
    cpu = contender.cpu_seconds() - cpu0
    result["cpu_s"] = cpu
    result["cpu_us_per_req"] = cpu * 1e6 / result["requests"] if result["requests"] else None
    return result


def _ratio(spec, portcullis, peer):
    a, b = portcullis.get(spec.metric), peer.get(spec.metric)
    if not a or not b:
        return None
    return b / a if spec.peer_over_portcullis else a / b


def _spread(values):
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return 0.0
    return (max(values) - min(values)) / statistics.median(values)


def _rounds(ctx, spec, contenders):
    s = ctx.settings
    for c in contenders:
        measure(ctx, c, spec.run, s.warmup_seconds)
    runs = {c.name: [] for c in contenders}
    ratios = {c.name: [] for c in contenders[1:]}
    for r in range(s.pairs):
        order = contenders if r % 2 == 0 else contenders[::-1]
        got = {}
        for c in order:
            got[c.name] = measure(ctx, c, spec.run, s.seconds)
            runs[c.name].append(got[c.name])
        p = got[contenders[0].name]
        for peer in contenders[1:]:
            ratios[peer.name].append(_ratio(spec, p, got[peer.name]))
        log(f"  {spec.key} round {r + 1}/{s.pairs}: " + ", ".join(
            f"{n} {_fmt(got[n].get(spec.metric))} {spec.unit} {got[n]['rps']:.0f} req/s"
            for n in got))
    return runs, ratios


def paired(ctx, spec, contenders):
    log(f"{spec.title}")
    runs, ratios = _rounds(ctx, spec, contenders)
    spread = max((_spread(v) for v in ratios.values()), default=0.0)
    first_spread = None
    if spread > ctx.settings.max_spread:
        log(f"  spread {spread:.1%} > {ctx.settings.max_spread:.0%}: running it once more")
        first_spread = spread
        runs, ratios = _rounds(ctx, spec, contenders)
        spread = max((_spread(v) for v in ratios.values()), default=0.0)
    return {"kind": "paired", "key": spec.key, "title": spec.title, "unit": spec.unit,
            "metric": spec.metric, "peer_over_portcullis": spec.peer_over_portcullis,
            "runs": runs, "ratios": ratios, "spread": spread, "first_spread": first_spread}


def _fmt(value):
    return "-" if value is None else f"{value:.1f}"


def run_keepalive(ctx, c, seconds):
    return load.wrk(ctx, c.url(), seconds, ctx.settings.connections)


def run_h2(ctx, c, seconds):
    return load.h2load(ctx, c.url(), seconds, connections=8, streams=16)


def run_latency(ctx, c, seconds):
    return load.oha(ctx, c.url(), seconds, ctx.settings.rate, connections=32)


def run_big(ctx, c, seconds):
    result = load.wrk(ctx, c.url("/big"), seconds, connections=4)
    result["mib_per_s"] = result["bytes"] / result["seconds"] / 2**20
    return result


def run_handshake(ctx, c, seconds):
    # A new TCP connection and a full TLS 1.3 handshake (no resumption) per request.
    return load.handshakes(ctx, c.port, HOST, 1, seconds, concurrency=16, request="/")


PAIRED = {
    "keepalive": Paired("keepalive", "HTTP/1.1 keep-alive (wrk, 32 connections)",
                        run_keepalive, "cpu_us_per_req", True, "µs/req"),
    "h2": Paired("h2", "HTTP/2 (h2load, 8 connections x 16 streams)",
                 run_h2, "cpu_us_per_req", True, "µs/req"),
    "latency": Paired("latency", "Fixed rate, open loop (oha, latency correction)",
                      run_latency, "p99_ms", False, "ms p99"),
    "big": Paired("big", "1 MiB responses (wrk, 4 connections)",
                  run_big, "cpu_us_per_req", True, "µs/MiB"),
    "handshake-ecdsa": Paired("handshake-ecdsa",
                              "New TLS connection per request, ECDSA P-256",
                              run_handshake, "cpu_us_per_req", True, "µs/conn"),
    "handshake-rsa": Paired("handshake-rsa", "New TLS connection per request, RSA-2048",
                            run_handshake, "cpu_us_per_req", True, "µs/conn"),
}


# ---------------------------------------------------------------------------------------
# TLS parameters actually negotiated


def tls_details(contender):
    """What `openssl s_client -groups X25519` negotiates, and how many session tickets
    the server sends after a full handshake."""
    request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    base = ["openssl", "s_client", "-connect", f"127.0.0.1:{contender.port}",
            "-servername", HOST, "-groups", "X25519"]
    brief = subprocess.run(base + ["-brief"], input="", capture_output=True, text=True,
                           timeout=20).stderr
    msgs = subprocess.run(base + ["-msg", "-ign_eof"], input=request, capture_output=True,
                          text=True, timeout=20).stdout
    def field(name):
        for line in brief.splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
        return "?"
    return {"protocol": field("Protocol version"), "suite": field("Ciphersuite"),
            "group": field("Server Temp Key"), "signature": field("Signature type"),
            "tickets": sum(1 for line in msgs.splitlines()
                           if line.startswith("<<<") and "NewSessionTicket" in line)}


# ---------------------------------------------------------------------------------------
# RSS per idle TLS connection


class IdleHolder:
    """bench-tools idle, driven over its standard input."""

    def __init__(self, ctx, port, count, seconds):
        self.proc = ctx.procs.spawn(
            [ctx.settings.tools, "idle", "--connect", f"127.0.0.1:{port}", "--sni", HOST,
             "--count", str(count), "--seconds", str(seconds)],
            cpu=ctx.settings.load_cpu, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.ctx = ctx

    def read(self, timeout=120):
        import json
        import select
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError("bench-tools idle did not answer")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("bench-tools idle exited")
        return json.loads(line)

    def command(self, word):
        self.proc.stdin.write(f"{word}\n".encode())
        self.proc.stdin.flush()
        return self.read()

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.ctx.procs.stop(self.proc)


def idle_rss(ctx, contenders):
    count = min(ctx.settings.idle_connections, max_idle_connections())
    log(f"RSS per idle TLS connection ({count} connections)")
    out = {"kind": "idle", "count": count, "requested": ctx.settings.idle_connections,
           "rows": {}}
    for c in contenders:
        c.start(ctx.ecdsa, [endpoint(0)])
        for _ in range(20):
            https_get(c.port)
        time.sleep(1)
        before = c.rss_bytes()
        holder = IdleHolder(ctx, c.port, count, seconds=600)
        try:
            ready = holder.read(timeout=300)
            time.sleep(2)
            after = c.rss_bytes()
            status = holder.command("status")
        finally:
            holder.close()
        opened = ready["open"]
        out["rows"][c.name] = {
            "opened": opened, "failed_to_open": ready["failed_to_open"],
            "closed_by_server": status["closed_by_server"],
            "rss_before": before, "rss_after": after,
            "per_conn": (after - before) / opened if opened else None}
        log(f"  {c.name}: {opened} open, RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB")
        c.stop()
    return out


# ---------------------------------------------------------------------------------------
# Certificate propagation


class Prober:
    """bench-tools probe: fresh handshakes every few ms; lines collected by a thread."""

    def __init__(self, ctx, port, seconds):
        self.proc = ctx.procs.spawn(
            [ctx.settings.tools, "probe", "--connect", f"127.0.0.1:{port}", "--sni", HOST,
             "--interval-ms", "2", "--concurrency", "2", "--seconds", str(seconds)],
            cpu=ctx.settings.load_cpu, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.ctx = ctx
        self.lines = []
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self):
        for raw in self.proc.stdout:
            parts = raw.decode().split()
            if len(parts) == 3:
                self.lines.append((int(parts[0]), int(parts[1]), parts[2]))

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.ctx.procs.stop(self.proc)


def propagation(ctx, contenders):
    n = ctx.settings.rotations
    log(f"Certificate propagation ({n} replacements, handshakes every ~2 ms)")
    pairs = bulk_pairs(ctx.settings.tools, ctx.run_dir / "rotation-certs", n + 1, HOST)
    prints = [p.fingerprint() for p in pairs]
    out = {"kind": "propagation", "rotations": n, "rows": {}}
    for c in contenders:
        c.start(pairs[0], [endpoint(0)])
        prober = Prober(ctx, c.port, seconds=n * 6 + 60)
        latencies, old_after, missed, errors_before = [], 0, 0, 0
        try:
            if not P.wait_until(lambda: any(l[2] == prints[0] for l in prober.lines), 10):
                raise RuntimeError(f"{c.name}: the prober saw no handshake")
            for i in range(1, n + 1):
                mark = len(prober.lines)
                written = time.time_ns()
                c.apply(cert=pairs[i])
                def first_new():
                    ends = [l[1] for l in prober.lines[mark:] if l[2] == prints[i]]
                    return min(ends) if ends else None
                seen = P.wait_until(first_new, timeout=5, interval=0.001)
                if seen is None:
                    missed += 1
                    continue
                latencies.append((seen - written) / 1e6)
                time.sleep(0.05)  # let later handshakes land, to count stale ones
                old_after += sum(1 for l in prober.lines[mark:]
                                 if l[0] > seen and l[2] == prints[i - 1])
            errors = sum(1 for l in prober.lines if l[2].startswith("ERR"))
            handshakes = len(prober.lines)
        finally:
            prober.close()
        c.stop()
        out["rows"][c.name] = {
            "p50_ms": _pct(latencies, 50), "p99_ms": _pct(latencies, 99),
            "max_ms": max(latencies) if latencies else None, "old_after": old_after,
            "missed": missed, "handshakes": handshakes, "handshake_errors": errors}
        log(f"  {c.name}: p50 {_fmt(_pct(latencies, 50))} ms, p99 "
            f"{_fmt(_pct(latencies, 99))} ms, old certificate after the new one: "
            f"{old_after}, not seen: {missed}, handshake errors {errors}/{handshakes}")
    return out


def _pct(values, q):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# ---------------------------------------------------------------------------------------
# Churn under load


def churn(ctx, contenders):
    s = ctx.settings
    seconds = s.churn_seconds
    log(f"Churn: {seconds} s of a rotation and an endpoint change every second, under "
        f"keep-alive load, new connections and {s.churn_idle} idle connections")
    pairs = bulk_pairs(s.tools, ctx.run_dir / "churn-certs", seconds + 1, HOST)
    out = {"kind": "churn", "seconds": seconds, "idle": s.churn_idle, "rows": {}}
    ka_rate, new_rate = 500, 50
    out["rates"] = (ka_rate, new_rate)
    for c in contenders:
        c.start(pairs[0], [endpoint(0), endpoint(1)])
        holder = IdleHolder(ctx, c.port, s.churn_idle, seconds=seconds + 300)
        ready = holder.read(timeout=120)
        span = seconds + 2
        keepalive = ctx.procs.spawn(load.oha_command(c.url(), span, ka_rate, 16),
                                    cpu=s.load_cpu, stdout=subprocess.PIPE)
        fresh = ctx.procs.spawn(load.oha_command(c.url(), span, new_rate, 4, keepalive=False),
                                cpu=s.load_cpu, stdout=subprocess.PIPE)
        try:
            time.sleep(1)
            start = time.monotonic()
            for tick in range(1, seconds + 1):
                endpoints = [endpoint(0), endpoint(1)] + ([endpoint(2)] if tick % 2 else [])
                c.apply(cert=pairs[tick], endpoints=endpoints)
                time.sleep(max(0.0, start + tick - time.monotonic()))
            ka = load.parse_oha(keepalive.communicate(timeout=span + 60)[0])
            new = load.parse_oha(fresh.communicate(timeout=span + 60)[0])
            time.sleep(1)
            verify = holder.command("verify")
        finally:
            ctx.procs.stop(keepalive)
            ctx.procs.stop(fresh)
            holder.close()
        c.stop()
        row = {"ka_ok": ka["requests"], "ka_failed": ka["failed"], "ka_errors": ka["errors"],
               "new_ok": new["requests"], "new_failed": new["failed"],
               "new_errors": new["errors"], "idle_opened": ready["open"],
               "idle_closed": verify["closed_by_server"],
               "idle_verify_failed": verify["failed"]}
        out["rows"][c.name] = row
        log(f"  {c.name}: keep-alive {row['ka_ok']} ok / {row['ka_failed']} failed, new "
            f"connections {row['new_ok']} ok / {row['new_failed']} failed, idle closed by "
            f"server {row['idle_closed']}/{row['idle_opened']}, idle reuse failed "
            f"{row['idle_verify_failed']}")
    return out
