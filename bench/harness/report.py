"""Turns the scenario results into the Markdown of bench/results/latest.md."""

import statistics

PEERS = ("nginx", "HAProxy")
NAMES = ("Portcullis",) + PEERS


def _med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _num(value, digits=1):
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio_cell(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.2f}× ({min(values):.2f}–{max(values):.2f})"


def _table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def header(meta):
    s = meta["settings"]
    lines = [
        f"# Portcullis side by side with nginx and HAProxy — {meta['date']}",
        "",
        f"- **Machine:** {meta['cpu']} ({meta['cores']} cores), kernel {meta['kernel']}; "
        f"load average {meta['load_start']} at the start, {meta['load_end']} at the end.",
        f"- **Conditions:** {meta['note']}",
        f"- **Run:** {'quick (smoke) mode' if s.quick else 'full run'}; {s.seconds:g} s per "
        f"measured run after a {s.warmup_seconds:g} s warm-up, {s.pairs} rounds per "
        f"scenario (order P N H, then H N P, ...), ratios taken inside each round; a "
        f"scenario whose ratios spread more than {s.max_spread:.0%} is run once more and "
        f"the second set reported. Took {meta['elapsed_min']:.1f} min.",
        f"- **Pinning:** contender on CPU {s.contender_cpu} (Portcullis "
        f"`--worker-threads 1`, nginx `worker_processes 1`, HAProxy `nbthread 1`); load "
        f"generators and the backend on CPU {s.load_cpu}. CPU time is the contender's "
        f"whole process tree from /proc/PID/stat (utime+stime; nginx master+worker, "
        f"HAProxy master+worker).",
        "",
        "| Contender | Version and TLS library |",
        "|---|---|",
    ]
    lines += [f"| {n} | {meta['versions'].get(n, '?')} |" for n in NAMES]
    tools = "; ".join(f"{k}: {v}" for k, v in meta["tools"].items())
    lines += ["", f"Load generators: {tools}.", ""]
    if meta.get("tls"):
        lines += ["What `openssl s_client -groups X25519` negotiated with each (ECDSA "
                  "certificate), and the session tickets each sends after a full "
                  "handshake (clients never resume):", ""]
        lines.append(_table(
            ["Contender", "Protocol", "Suite", "Key exchange", "Signature", "Tickets sent"],
            [[n, t["protocol"], t["suite"], t["group"], t["signature"], t["tickets"]]
             for n, t in meta["tls"].items()]))
        lines.append("")
    return "\n".join(lines)


def paired_section(results):
    rows = []
    for r in results:
        cells = [r["title"]]
        for n in NAMES:
            runs = r["runs"].get(n, [])
            cost = _med([x.get(r["metric"]) for x in runs])
            rps = _med([x["rps"] for x in runs])
            extra = ""
            if r["key"] == "big":
                extra = f" · {_num(_med([x['mib_per_s'] for x in runs]))} MiB/s"
            failed = sum(x.get("failed", 0) for x in runs)
            cells.append(f"{_num(cost)} {r['unit']} · {_num(rps, 0)} req/s{extra}"
                         + (f" · **{failed} failed**" if failed else ""))
        for peer in PEERS:
            cells.append(_ratio_cell(r["ratios"].get(peer, [])))
        note = f"{r['spread']:.0%}"
        if r["first_spread"] is not None:
            note += f" (rerun; first {r['first_spread']:.0%})"
        cells.append(note)
        rows.append(cells)
    head = ["Scenario", "Portcullis", "nginx", "HAProxy", "vs nginx", "vs HAProxy",
            "ratio spread"]
    text = [
        "## Cost and throughput",
        "",
        "Cells: median contender CPU per request (per 1 MiB response, per new connection) "
        "and median requests/s. **Ratio columns: for CPU costs, the peer's cost divided "
        "by Portcullis's (above 1 = Portcullis uses less CPU); for the fixed-rate row, "
        "Portcullis's p99 divided by the peer's (below 1 = Portcullis is faster).** "
        "Median (min–max) over the rounds.",
        "",
        _table(head, rows),
        "",
    ]
    return "\n".join(text)


def latency_section(result, rate):
    rows = []
    for n in NAMES:
        runs = result["runs"].get(n, [])
        rows.append([n, _num(_med([x["p50_ms"] for x in runs]), 2),
                     _num(_med([x["p99_ms"] for x in runs]), 2),
                     _num(_med([x["p999_ms"] for x in runs]), 2),
                     _num(_med([x["cpu_us_per_req"] for x in runs])),
                     sum(x["failed"] for x in runs)])
    return "\n".join([
        f"## Latency at a fixed {rate} requests/s (oha, open loop, latency correction)",
        "", _table(["Contender", "p50 ms", "p99 ms", "p99.9 ms", "CPU µs/req", "failed"],
                   rows), ""])


def idle_section(result):
    rows = []
    base = result["rows"].get("Portcullis", {}).get("per_conn")
    for n, row in result["rows"].items():
        per = row["per_conn"]
        rows.append([n, row["opened"], row["failed_to_open"],
                     _num(row["rss_before"] / 2**20), _num(row["rss_after"] / 2**20),
                     _num(per / 1024 if per else None),
                     _num(per / base, 2) if per and base and n != "Portcullis" else ""])
    capped = ""
    if result["count"] < result["requested"]:
        capped = (f" (asked for {result['requested']}; the open-files hard limit here "
                  f"allows every contender {result['count']}, since HAProxy reserves two "
                  f"descriptors per connection)")
    return "\n".join([
        f"## Memory per idle TLS connection: {result['count']} connections{capped}",
        "", "Each connection made a full handshake and one keep-alive request, then idled.",
        "", _table(["Contender", "opened", "failed", "RSS before MiB", "RSS after MiB",
                    "KiB per connection", "peer ÷ Portcullis"], rows), ""])


def propagation_section(result):
    rows = [[n, _num(r["p50_ms"]), _num(r["p99_ms"]), _num(r["max_ms"]), r["old_after"],
             r["missed"], f"{r['handshake_errors']}/{r['handshakes']}"]
            for n, r in result["rows"].items()]
    return "\n".join([
        f"## Certificate replacement, {result['rotations']} times",
        "", "Time from writing the new certificate (Portcullis: the Secret manifest file in "
        "its folder; nginx: new files + `nginx -s reload`; HAProxy: new file + master-worker "
        "reload) to the first handshake presenting it, with two probe loops each making a "
        "fresh handshake every ~2 ms. *Old after* counts handshakes that started after "
        "the first new one and still got the old certificate.",
        "", _table(["Contender", "p50 ms", "p99 ms", "max ms", "old after", "never seen",
                    "handshake errors"], rows), ""])


def churn_section(result):
    rows = []
    for n, r in result["rows"].items():
        errs = {**r["ka_errors"], **r["new_errors"]}
        kinds = "; ".join(f"{k}: {v}" for k, v in list(errs.items())[:3])
        rows.append([n, f"{r['ka_ok']} / {r['ka_failed']}", f"{r['new_ok']} / {r['new_failed']}",
                     f"{r['idle_closed']} of {r['idle_opened']}", r["idle_verify_failed"],
                     kinds or "none"])
    ka, new = result["rates"]
    return "\n".join([
        f"## Churn: {result['seconds']} s, every second a certificate rotation and a "
        f"backend endpoint added or removed",
        "", f"Under keep-alive load ({ka} req/s over 16 connections), new connections "
        f"({new} req/s, one request each) and {result['idle']} idle TLS connections. "
        "Portcullis: file edits; nginx: `nginx -s reload` per change; HAProxy: seamless "
        "master-worker reload per change.",
        "", _table(["Contender", "keep-alive ok / failed", "new-connection ok / failed",
                    "idle closed by server", "idle reuse failed", "errors"], rows), ""])


def scale_section(result):
    rows = []
    for n, per in result["rows"].items():
        base = per.get("Portcullis", {})
        for name in NAMES:
            r = per.get(name)
            if r is None:
                continue
            if "error" in r:
                rows.append([n, name, f"failed: {r['error']}"] + [""] * 7)
                continue
            hs = r["handshakes_per_s"]
            vs = (f" ({hs / base['handshakes_per_s']:.2f}× P)"
                  if name != "Portcullis" and base.get("handshakes_per_s") else "")
            rows.append([n, name, _num(r["ready_s"], 2), _num(r["rss"] / 2**20),
                         _num(r["pss"] / 2**20), _num(r["translate_ms"]),
                         _num(r["applied_ms"]), _num(hs, 0) + vs,
                         _num(r["cpu_us_per_handshake"], 0), r["handshake_failed"]])
    return "\n".join([
        "## Scale: N Ingresses, each with its own host and ECDSA certificate",
        "", "Portcullis in folder mode (one file per Ingress and its Secret); nginx with one "
        "`server` block per host; HAProxy with a `crt-list` and a host+path map. *Serving*: "
        "from start to /readyz (Portcullis) or to the first answer for the last host (peers). "
        "Memory 2 s later: RSS and PSS summed over the process tree (PSS splits pages a "
        "master shares with its worker). *Change served*: one host's rule path rewritten "
        "(Portcullis: its file; peers: configuration + reload), until a request shows it; "
        "*translate*: `translate_ms` of Portcullis's \"snapshot applied\" log line. "
        "Handshakes: full TLS 1.3 handshakes, SNI spread over all N hosts.",
        "", _table(["Ingresses", "Contender", "serving s", "RSS MiB", "PSS MiB",
                    "translate ms", "change served ms", "handshakes/s", "CPU µs/handshake",
                    "failed"], rows), ""])


def targets_section(results):
    """The issue's targets, each with the measured value and whether it is met."""
    rows = []
    def ratio(key, peer):
        r = results.get(key)
        return _med(r["ratios"].get(peer, [])) if r else None
    def add(target, value, ok, shown):
        rows.append([target, shown if value is not None else "not measured",
                     "-" if value is None else ("met" if ok else "**missed**")])

    v = ratio("keepalive", "nginx")
    add("Keep-alive efficiency ≥ 1.3× nginx", v, v is not None and v >= 1.3, f"{_num(v, 2)}×")
    v = ratio("keepalive", "HAProxy")
    add("Keep-alive efficiency ≥ 1.2× HAProxy", v, v is not None and v >= 1.2,
        f"{_num(v, 2)}×")
    v = ratio("latency", "nginx")
    add("p99 at a fixed rate ≤ 0.8× nginx", v, v is not None and v <= 0.8, f"{_num(v, 2)}×")
    v = ratio("handshake-ecdsa", "nginx")
    inv = 1 / v if v else None
    add("CPU per new ECDSA connection ≤ 0.6× nginx", inv, inv is not None and inv <= 0.6,
        f"{_num(inv, 2)}×")
    c = results.get("churn", {}).get("rows", {}).get("Portcullis")
    if c:
        failed = c["ka_failed"] + c["new_failed"] + c["idle_verify_failed"]
        add("0 failed requests across rotations/endpoint changes", failed, failed == 0,
            f"{failed} failed")
        add("0 idle connections closed across rotations/endpoint changes", c["idle_closed"],
            c["idle_closed"] == 0, f"{c['idle_closed']} closed")
    else:
        add("0 failed requests / 0 idle closed under churn", None, False, "")
    p = results.get("propagation", {}).get("rows", {}).get("Portcullis")
    v = p["p99_ms"] if p else None
    add("Rotation seen within 100 ms at p99", v, v is not None and v <= 100 and p["missed"] == 0,
        f"{_num(v)} ms")
    s = results.get("scale", {}).get("rows", {}).get(10000, {}).get("Portcullis")
    s = s if s and "error" not in s else None
    add("10k Ingresses+certs ready < 3 s", s and s["ready_s"],
        bool(s) and s["ready_s"] < 3, f"{_num(s and s['ready_s'], 2)} s")
    add("10k Ingresses+certs < 150 MiB RSS", s and s["rss"], bool(s) and s["rss"] < 150 * 2**20,
        f"{_num(s and s['rss'] / 2**20)} MiB")
    v = s and s["translate_ms"]
    add("One-Ingress rebuild < 50 ms (10k)", v, v is not None and v < 50,
        f"{_num(v)} ms translate; {_num(s and s['applied_ms'])} ms write to applied")
    i = results.get("idle", {}).get("rows", {}).get("Portcullis")
    v = i and i["per_conn"]
    add("< 16 KiB RSS per idle TLS connection", v, v is not None and v < 16 * 1024,
        f"{_num(v and v / 1024)} KiB")
    return "\n".join(["## Targets from the issue", "",
                      _table(["Target", "Measured (Portcullis)", ""], rows), ""])


def render(meta, results):
    parts = [header(meta)]
    paired = [results[k] for k in ("keepalive", "h2", "latency", "big", "handshake-ecdsa",
                                   "handshake-rsa") if k in results]
    if paired:
        parts.append(paired_section(paired))
    if "latency" in results:
        parts.append(latency_section(results["latency"], meta["settings"].rate))
    if "idle" in results:
        parts.append(idle_section(results["idle"]))
    if "propagation" in results:
        parts.append(propagation_section(results["propagation"]))
    if "churn" in results:
        parts.append(churn_section(results["churn"]))
    if "scale" in results:
        parts.append(scale_section(results["scale"]))
    parts.append(targets_section(results))
    if meta.get("problems"):
        parts.append("## Problems during the run\n\n" + "\n".join(
            f"- {p}" for p in meta["problems"]) + "\n")
    return "\n".join(parts)
