"""The load generators, run pinned to the load core, and what they print, as dicts.

Every run is bounded by a duration (and the subprocess by a timeout past it). Counts
that matter everywhere: `requests` (answered with 2xx), `failed` (anything else:
non-2xx, socket errors, timeouts), `seconds`.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _bytes(number, unit):
    return float(number) * UNITS.get(unit.upper().replace("I", ""), 1)


def oha_binary():
    found = shutil.which("oha") or str(Path.home() / ".cargo" / "bin" / "oha")
    return found


def wrk(ctx, url, seconds, connections, headers=()):
    """wrk, one thread, closed loop. Returns requests/s, bytes/s, failures."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s"]
    for header in headers:
        cmd += ["-H", header]
    code, out = ctx.procs.run(cmd + [url], cpu=ctx.settings.load_cpu, timeout=seconds + 60)
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s|us),\s+([\d.]+)([KMGT]?B) read", out)
    if code != 0 or not m:
        raise RuntimeError(f"wrk failed ({code}): {out[-500:]}")
    total = int(m.group(1))
    elapsed = float(m.group(2)) * {"s": 1, "ms": 1e-3, "us": 1e-6}[m.group(3)]
    socket_errors = sum(int(n) for n in re.findall(
        r"(?:connect|read|write|timeout) (\d+)", _line(out, "Socket errors")))
    non_2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
    return {"requests": total - non_2xx, "failed": non_2xx + socket_errors,
            "socket_errors": socket_errors, "seconds": elapsed,
            "bytes": _bytes(m.group(4), m.group(5)), "rps": (total - non_2xx) / elapsed}


def h2load(ctx, url, seconds, connections, streams):
    """h2load, one thread, HTTP/2 over TLS, for a duration."""
    cmd = ["h2load", "-t1", f"-c{connections}", f"-m{streams}", "-D", str(round(seconds)),
           url]
    code, out = ctx.procs.run(cmd, cpu=ctx.settings.load_cpu, timeout=seconds + 60)
    fin = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    if not fin or not req:
        raise RuntimeError(f"h2load failed ({code}): {out[-500:]}")
    elapsed = float(fin.group(1)) * (1e-3 if fin.group(2) == "ms" else 1)
    ok = int(codes.group(1)) if codes else int(req.group(4))
    # "failed" already counts errored and timed-out requests; add answers that were not 2xx.
    failed = int(req.group(5)) + max(0, int(req.group(3)) - ok - int(req.group(5)))
    return {"requests": ok, "failed": failed, "seconds": elapsed, "rps": ok / elapsed}


def oha_command(url, seconds, rate, connections, keepalive=True):
    cmd = [oha_binary(), "-z", f"{round(seconds)}s", "-q", str(rate), "-c", str(connections),
           "--latency-correction", "--no-tui", "--insecure", "--output-format", "json"]
    if not keepalive:
        cmd.append("--disable-keepalive")
    return cmd + [url]


def parse_oha(text):
    """oha's JSON summary: successes, failures by kind, latency percentiles in ms."""
    data = json.loads(text)
    summary = data.get("summary", {})
    codes = data.get("statusCodeDistribution", {}) or {}
    errors = dict(data.get("errorDistribution", {}) or {})
    # Requests still in flight when -z runs out are cut off by oha itself: not failures.
    aborted = errors.pop("aborted due to deadline", 0)
    ok = sum(n for code, n in codes.items() if str(code).startswith("2"))
    not_ok = sum(n for code, n in codes.items() if not str(code).startswith("2"))
    pct = data.get("latencyPercentiles", {}) or {}
    def ms(key):
        value = pct.get(key)
        return None if value is None else value * 1000
    seconds = summary.get("total") or 0
    return {"requests": ok, "failed": not_ok + sum(errors.values()), "errors": errors,
            "aborted_at_deadline": aborted,
            "seconds": seconds, "rps": ok / seconds if seconds else 0,
            "p50_ms": ms("p50"), "p99_ms": ms("p99"), "p999_ms": ms("p99.9")}


def oha(ctx, url, seconds, rate, connections, keepalive=True):
    code, out = ctx.procs.run(oha_command(url, seconds, rate, connections, keepalive),
                              cpu=ctx.settings.load_cpu, timeout=seconds + 60)
    if code != 0:
        raise RuntimeError(f"oha failed ({code}): {out[-500:]}")
    return parse_oha(out)


def handshakes(ctx, port, sni, hosts, seconds, concurrency, request=None):
    """bench-tools handshakes: full TLS 1.3 handshakes, SNI spread over `hosts` names."""
    cmd = [ctx.settings.tools, "handshakes", "--connect", f"127.0.0.1:{port}", "--sni", sni,
           "--hosts", str(hosts), "--concurrency", str(concurrency), "--seconds", str(seconds)]
    if request:
        cmd += ["--request", request]
    code, out = ctx.procs.run(cmd, cpu=ctx.settings.load_cpu, timeout=seconds + 60)
    if code != 0:
        raise RuntimeError(f"bench-tools handshakes failed ({code}): {out[-500:]}")
    data = json.loads(out)
    return {"requests": data["ok"], "failed": data["errors"], "seconds": data["seconds"],
            "rps": data["per_sec"], "error_kinds": data["error_kinds"]}


def _line(text, prefix):
    for line in text.splitlines():
        if line.strip().startswith(prefix):
            return line
    return ""


def tool_versions():
    def first(cmd, stream="stdout"):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        text = (r.stdout or "") + (r.stderr or "")
        return text.strip().splitlines()[0] if text.strip() else "?"
    return {
        "wrk": first(["wrk", "-v"]).split(" Copyright")[0],
        "h2load": first(["h2load", "--version"]),
        "oha": first([oha_binary(), "--version"]),
        "openssl": first(["openssl", "version"]),
    }
