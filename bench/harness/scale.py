"""Scale: N Ingresses, each with its own host and ECDSA certificate.

Portcullis serves them in folder mode (one file per Ingress and its Secret). The peers
get the equivalent: nginx one `server` block per host with its certificate; HAProxy one
`crt-list` line per certificate and a host+path map for routing. For each: time from
start to serving (Portcullis: /readyz on the admin port; the peers: the first request
answered for the last host), memory at rest, the time for one host's rule change to be
served (Portcullis: a rewritten file, plus translate_ms from its log; the peers: a
rewritten configuration and a reload), and full handshakes per second with SNI spread
over every host.
"""

import base64
import os
import signal
import statistics
import time

from . import load
from . import procs as P
from .certs import bulk_pairs
from .contenders import BACKEND_PORT, NOFILE, Portcullis, atomic_write, https_get
from .scenarios import _fmt, log

DOMAIN = "bench.test"


def host(i):
    return f"h{i}.{DOMAIN}"


class PortcullisScale:
    name = "Portcullis"
    port = Portcullis.port

    def __init__(self, ctx, folder, pairs):
        self.ctx, self.pairs = ctx, pairs
        self.p = Portcullis(ctx.settings, ctx.procs, folder)
        self.manifests = self.p.manifests
        self.offset = 0

    def prepare(self):
        self.manifests.mkdir(parents=True, exist_ok=True)
        (self.manifests / "common.yaml").write_text(COMMON_YAML)
        for i in range(len(self.pairs)):
            (self.manifests / f"ing-{i}.yaml").write_text(self._ingress(i, "/"))

    def _ingress(self, i, path):
        crt, key = self.pairs[i].pem()
        return INGRESS_YAML.format(i=i, host=host(i), path=path,
                                   crt=base64.b64encode(crt.encode()).decode(),
                                   key=base64.b64encode(key.encode()).decode())

    def spawn(self):
        self.p.proc = self.p.spawn()
        return self.p.proc

    def ready(self):
        return self.p.admin_ready()

    def change(self, i, path):
        _, self.offset = self.p.log_events("snapshot applied")
        atomic_write(self.manifests / f"ing-{i}.yaml", self._ingress(i, path))

    def translate_ms(self):
        events, _ = self.p.log_events("snapshot applied", self.offset)
        return float(events[-1]["translate_ms"]) if events else None


class NginxScale:
    name = "nginx"
    port = 28443

    def __init__(self, ctx, folder, pairs):
        self.ctx, self.pairs = ctx, pairs
        self.dir = folder / "nginx"
        self.paths = {}

    def prepare(self):
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        self._write()

    def _write(self):
        blocks = []
        for i, pair in enumerate(self.pairs):
            blocks.append(NGINX_SERVER.format(port=self.port, host=host(i), crt=pair.cert,
                                              key=pair.key, path=self.paths.get(i, "/")))
        (self.dir / "nginx.conf").write_text(NGINX_CONF.format(
            dir=self.dir, nofile=NOFILE, backend=f"127.0.0.1:{BACKEND_PORT}",
            servers="".join(blocks)))

    def spawn(self):
        self.proc = self.ctx.procs.spawn(
            ["nginx", "-c", self.dir / "nginx.conf", "-p", self.dir, "-e",
             self.dir / "error.log"], cpu=self.ctx.settings.contender_cpu,
            log=self.dir / "stderr.log")
        return self.proc

    def ready(self):
        answer = https_get(self.port, host=host(len(self.pairs) - 1))
        return answer is not None and answer[0] == 200

    def change(self, i, path):
        self.paths[i] = path
        self._write()
        os.kill(self.proc.pid, signal.SIGHUP)

    def translate_ms(self):
        return None


class HAProxyScale:
    name = "HAProxy"
    port = 38443

    def __init__(self, ctx, folder, pairs):
        self.ctx, self.pairs = ctx, pairs
        self.dir = folder / "haproxy"
        self.paths = {}

    def prepare(self):
        certs = self.dir / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        lines = []
        for i, pair in enumerate(self.pairs):
            pem = certs / f"{i}.pem"
            crt, key = pair.pem()
            pem.write_text(crt + key)
            lines.append(f"{pem}\n")
        (self.dir / "crt-list.txt").write_text("".join(lines))
        (self.dir / "haproxy.cfg").write_text(HAPROXY_CONF.format(
            dir=self.dir, port=self.port, nofile=NOFILE, maxconn=(NOFILE - 100) // 2,
            backend=f"127.0.0.1:{BACKEND_PORT}"))
        self._write_map()

    def _write_map(self):
        (self.dir / "hosts.map").write_text("".join(
            f"{host(i)}{self.paths.get(i, '/')} backend\n" for i in range(len(self.pairs))))

    def spawn(self):
        self.proc = self.ctx.procs.spawn(
            ["haproxy", "-W", "-f", self.dir / "haproxy.cfg", "-S", f"{self.dir}/master.sock"],
            cpu=self.ctx.settings.contender_cpu, log=self.dir / "haproxy.log")
        return self.proc

    def ready(self):
        answer = https_get(self.port, host=host(len(self.pairs) - 1))
        return answer is not None and answer[0] == 200

    def change(self, i, path):
        self.paths[i] = path
        self._write_map()
        os.kill(self.proc.pid, signal.SIGUSR2)

    def translate_ms(self):
        return None


def measure(ctx, target, n):
    s = ctx.settings
    target.prepare()

    started = time.monotonic()
    proc = target.spawn()
    def ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{target.name} exited with {proc.returncode}")
        return target.ready()
    if not P.wait_until(ready, timeout=600, interval=0.01):
        raise RuntimeError(f"{target.name} with {n} hosts was not serving after 600 s")
    ready_s = time.monotonic() - started
    time.sleep(2)
    rss, pss = P.rss_bytes(proc.pid), P.pss_bytes(proc.pid)

    # One host's rule changes: "/" -> "/v" (its "/" now answers 404) and back.
    probe_host = host(n // 2)
    applied, translate = [], []
    for k in range(3):
        path, expect = ("/v", 404) if k % 2 == 0 else ("/", 200)
        written = time.monotonic()
        target.change(n // 2, path)
        def served():
            answer = https_get(target.port, host=probe_host, timeout=5)
            return answer is not None and answer[0] == expect
        if P.wait_until(served, timeout=120, interval=0.005):
            applied.append((time.monotonic() - written) * 1000)
        time.sleep(0.3)
        t = target.translate_ms()
        if t is not None:
            translate.append(t)

    cpu0 = P.cpu_seconds(proc.pid)
    hs = load.handshakes(ctx, target.port, "h{}." + DOMAIN, n, s.seconds, concurrency=16)
    cpu = P.cpu_seconds(proc.pid) - cpu0
    ctx.procs.stop(proc, grace=5.0)
    row = {"ready_s": ready_s, "rss": rss, "pss": pss,
           "translate_ms": statistics.median(translate) if translate else None,
           "applied_ms": statistics.median(applied) if applied else None,
           "handshakes_per_s": hs["rps"], "handshake_failed": hs["failed"],
           "cpu_us_per_handshake": cpu * 1e6 / hs["requests"] if hs["requests"] else None}
    log(f"  {target.name}: serving in {ready_s:.2f} s, RSS {rss / 2**20:.1f} MiB (PSS "
        f"{pss / 2**20:.1f}), change served in {_fmt(row['applied_ms'])} ms, "
        f"{hs['rps']:.0f} handshakes/s at {_fmt(row['cpu_us_per_handshake'])} µs CPU each")
    return row


def scale(ctx):
    out = {"kind": "scale", "rows": {}}
    for n in ctx.settings.scale_sizes:
        log(f"Scale: {n} Ingresses, each with its own certificate and host")
        folder = ctx.run_dir / f"scale-{n}"
        pairs = bulk_pairs(ctx.settings.tools, folder / "certs", n, "h{}." + DOMAIN)
        out["rows"][n] = {}
        for kind in (PortcullisScale, NginxScale, HAProxyScale):
            target = kind(ctx, folder, pairs)
            try:
                out["rows"][n][target.name] = measure(ctx, target, n)
            except Exception as error:
                log(f"  {target.name}: {error}")
                out["rows"][n][target.name] = {"error": str(error)}
    return out


COMMON_YAML = f"""\
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: portcullis}}
spec: {{controller: portcullis.dev/ingress-controller}}
---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: scale}}
spec:
  ports: [{{name: http, port: 80, targetPort: {BACKEND_PORT}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-1
  namespace: scale
  labels: {{kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{{name: http, port: {BACKEND_PORT}}}]
endpoints:
- addresses: [127.0.0.1]
  conditions: {{ready: true}}
"""

INGRESS_YAML = """\
apiVersion: v1
kind: Secret
metadata: {{name: h{i}-tls, namespace: scale}}
type: kubernetes.io/tls
data:
  tls.crt: {crt}
  tls.key: {key}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: h{i}, namespace: scale}}
spec:
  ingressClassName: portcullis
  tls:
  - hosts: [{host}]
    secretName: h{i}-tls
  rules:
  - host: {host}
    http:
      paths:
      - path: {path}
        pathType: Prefix
        backend:
          service: {{name: backend, port: {{number: 80}}}}
"""

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {nofile};
worker_shutdown_timeout 10s;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp/body;
  proxy_temp_path {dir}/tmp/proxy;
  fastcgi_temp_path {dir}/tmp/fastcgi;
  uwsgi_temp_path {dir}/tmp/uwsgi;
  scgi_temp_path {dir}/tmp/scgi;
  server_names_hash_max_size 65536;
  server_names_hash_bucket_size 128;
  ssl_protocols TLSv1.3;
  ssl_ecdh_curve X25519;
  ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384;
  ssl_session_tickets off;
  ssl_session_cache off;
  proxy_buffering off;
  upstream backend {{
    server {backend};
    keepalive 64;
  }}
{servers}}}
"""

NGINX_SERVER = """\
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name {host};
    ssl_certificate {crt};
    ssl_certificate_key {key};
    location {path} {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }}
  }}
"""

HAPROXY_CONF = """\
global
  nbthread 1
  maxconn {maxconn}
  ulimit-n {nofile}
  hard-stop-after 10s
  tune.ssl.cachesize 0
  stats socket {dir}/admin.sock mode 600 level admin expose-fd listeners

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-request 10s

frontend bench
  bind 127.0.0.1:{port} ssl crt-list {dir}/crt-list.txt alpn http/1.1 ssl-min-ver TLSv1.3 curves X25519 ciphersuites TLS_AES_256_GCM_SHA384 no-tls-tickets
  http-request set-var(txn.route) base,map_beg({dir}/hosts.map)
  http-request deny deny_status 404 unless {{ var(txn.route) -m found }}
  default_backend backend

backend backend
  server s1 {backend}
"""
