"""The three contenders, configured alike: TLS 1.3 only, X25519 where the server can pin
it, one certificate for `localhost`, no session resumption, no access log, pooled
keep-alive connections to the same backend, one worker thread or process, pinned to the
contender core.

Each contender can be started with a certificate and a list of backend endpoints, and
can be told to change either while running the way its users would: Portcullis by
rewriting a manifest file in its folder, nginx by rewriting its configuration and
reloading (SIGHUP), HAProxy by rewriting its configuration and a seamless master-worker
reload (SIGUSR2; listeners pass to the new worker over the `expose-fd listeners` socket,
the old worker gets -sf).
"""

import base64
import json
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from . import procs as P
from .certs import HOST

BACKEND_PORT = 19101
# Open files: run.sh raises the soft limit to the hard one; nginx and HAProxy are told
# the same. HAProxy reserves two descriptors per connection slot, so the most
# connections every contender can hold is about half of it (see max_idle_connections).
NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def max_idle_connections():
    return (NOFILE - 200) // 2


def endpoint(i):
    """The i-th backend endpoint (0-based): same port, distinct loopback addresses."""
    return f"127.0.0.{i + 1}:{BACKEND_PORT}"


def atomic_write(path: Path, text: str):
    """Writes text to path by rename, so a watcher never reads half a file."""
    staging = path.parent.parent / f".{path.name}.staging"
    staging.write_text(text)
    os.replace(staging, path)


def https_get(port, path="/", timeout=2.0, host=HOST):
    """One GET over a fresh TLS 1.3 connection; returns (status, body) or None."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                            "Connection: close\r\n\r\n".encode())
                data = b""
                while True:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    data += chunk
    except (OSError, ssl.SSLError):
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        return None


class Contender:
    name = "?"
    port = 0

    def __init__(self, settings, procs: P.Procs, run_dir: Path):
        self.settings = settings
        self.procs = procs
        self.dir = run_dir / self.name.lower()
        self.proc = None
        self.generation = 0
        self.cert = None
        self.endpoints = []

    @property
    def pid(self):
        return self.proc.pid

    def url(self, path="/"):
        return f"https://{HOST}:{self.port}{path}"

    def cpu_seconds(self):
        return P.cpu_seconds(self.pid)

    def rss_bytes(self):
        return P.rss_bytes(self.pid)

    def start(self, cert, endpoints):
        self.stop()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert, self.endpoints = cert, list(endpoints)
        self.generation += 1
        self.write_config()
        self.proc = self.spawn()
        if not P.wait_until(self.ready, timeout=120, interval=0.02):
            raise RuntimeError(f"{self.name} did not become ready; see {self.dir}")

    def ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; "
                               f"see {self.dir}")
        answer = https_get(self.port)
        return answer is not None and answer[0] == 200

    def apply(self, cert=None, endpoints=None):
        """Changes the certificate and/or endpoints the way this contender's users do."""
        if cert is not None:
            self.cert = cert
        if endpoints is not None:
            self.endpoints = list(endpoints)
        self.generation += 1
        self.write_config()
        self.reload()

    def stop(self):
        if self.proc is not None:
            self.procs.stop(self.proc, grace=5.0)
            self.proc = None

    # Filled in by each contender.
    def write_config(self):
        raise NotImplementedError

    def spawn(self):
        raise NotImplementedError

    def reload(self):
        raise NotImplementedError

    def version(self):
        raise NotImplementedError


class Portcullis(Contender):
    """Folder mode: the Secret, the Ingress and the Service with its EndpointSlice each in
    a file of their own, so a rotation rewrites exactly the Secret's file."""

    name = "Portcullis"
    port = 18443
    admin_port = 18254

    def __init__(self, *args):
        super().__init__(*args)
        self.manifests = self.dir / "manifests"
        self.log = self.dir / "portcullis.log"

    def write_config(self):
        self.manifests.mkdir(parents=True, exist_ok=True)
        if not (self.manifests / "ingress.yaml").exists():
            atomic_write(self.manifests / "ingress.yaml", INGRESS_YAML)
        crt, key = self.cert.pem()
        secret = SECRET_YAML.format(
            name="bench-tls", crt=base64.b64encode(crt.encode()).decode(),
            key=base64.b64encode(key.encode()).decode())
        if self._changed("secret.yaml", secret):
            atomic_write(self.manifests / "secret.yaml", secret)
        service = SERVICE_YAML + "".join(
            f"- addresses: [{e.split(':')[0]}]\n  conditions: {{ready: true}}\n"
            for e in self.endpoints)
        if self._changed("service.yaml", service):
            atomic_write(self.manifests / "service.yaml", service)

    def _changed(self, file, text):
        path = self.manifests / file
        return not path.exists() or path.read_text() != text

    def spawn(self):
        env = dict(os.environ, RUST_LOG=os.environ.get("BENCH_PORTCULLIS_LOG", "info"))
        return self.procs.spawn(
            [self.settings.portcullis, "serve", "--manifests", self.manifests,
             "--https-addr", f"127.0.0.1:{self.port}", "--http-addr", "127.0.0.1:18080",
             "--admin-addr", f"127.0.0.1:{self.admin_port}",
             "--worker-threads", "1", "--access-log", "off", "--log-format", "json",
             "--keepalive-timeout", "300s", "--shutdown-delay", "0s",
             "--drain-timeout", "5s", "--default-certificate", "bench/bench-tls"],
            cpu=self.settings.contender_cpu, log=self.log, env=env)

    def ready(self):
        return self.admin_ready() and super().ready()

    def admin_ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"Portcullis exited with {self.proc.returncode}; "
                               f"see {self.log}")
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.admin_port}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def reload(self):
        pass  # the folder watcher picks the files up

    def version(self):
        root = self.settings.root
        commit = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty"],
                                capture_output=True, text=True).stdout.strip()
        lock = (root / "Cargo.lock").read_text()
        def locked(crate):
            m = re.search(rf'name = "{crate}"\nversion = "([^"]+)"', lock)
            return m.group(1) if m else "?"
        return (f"portcullis {commit}; rustls {locked('rustls')} "
                f"(ring {locked('ring')}), hyper {locked('hyper')}, "
                f"tokio {locked('tokio')}")

    def log_events(self, message, since=0):
        """JSON log lines with this message, from byte offset `since`; and the new offset."""
        events = []
        with open(self.log, "rb") as f:
            f.seek(since)
            data = f.read()
        end = since + data.rfind(b"\n") + 1 if b"\n" in data else since
        for line in data[: end - since].splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            fields = entry.get("fields", entry)
            if fields.get("message") == message:
                events.append(dict(entry, **fields))
        return events, end


INGRESS_YAML = """\
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portcullis}
spec: {controller: portcullis.dev/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bench, namespace: bench}
spec:
  ingressClassName: portcullis
  tls:
  - hosts: [localhost]
    secretName: bench-tls
  rules:
  - host: localhost
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {name: backend, port: {number: 80}}
"""

SECRET_YAML = """\
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: bench}}
type: kubernetes.io/tls
data:
  tls.crt: {crt}
  tls.key: {key}
"""

SERVICE_YAML = f"""\
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: bench}}
spec:
  ports: [{{name: http, port: 80, targetPort: {BACKEND_PORT}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-1
  namespace: bench
  labels: {{kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{{name: http, port: {BACKEND_PORT}}}]
endpoints:
"""


class Nginx(Contender):
    """One worker process, the upstream keep-alive pool on, buffering off and the
    forwarded headers set as ingress-nginx sets them, so the work per request matches."""

    name = "nginx"
    port = 28443

    def write_config(self):
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        crt, key = self._cert_files()
        servers = "".join(f"    server {e};\n" for e in self.endpoints)
        conf = NGINX_CONF.format(dir=self.dir, port=self.port, crt=crt, key=key,
                                 servers=servers, nofile=NOFILE,
                                 connections=NOFILE - 100)
        (self.dir / "nginx.conf").write_text(conf)

    def _cert_files(self):
        # A new file name per generation, as a certificate manager writing a new Secret.
        crt = self.dir / f"cert-{self.generation}.crt"
        key = self.dir / f"cert-{self.generation}.key"
        c, k = self.cert.pem()
        crt.write_text(c)
        key.write_text(k)
        return crt, key

    def spawn(self):
        return self.procs.spawn(
            ["nginx", "-c", self.dir / "nginx.conf", "-p", self.dir, "-e",
             self.dir / "error.log"],
            cpu=self.settings.contender_cpu, log=self.dir / "stderr.log")

    def reload(self):
        os.kill(self.pid, signal.SIGHUP)

    def version(self):
        out = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
        lines = out.splitlines()
        return f"{lines[0].split(': ', 1)[-1]}; {lines[1]}" if len(lines) > 1 else out


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {nofile};
worker_shutdown_timeout 10s;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp/body;
  proxy_temp_path {dir}/tmp/proxy;
  fastcgi_temp_path {dir}/tmp/fastcgi;
  uwsgi_temp_path {dir}/tmp/uwsgi;
  scgi_temp_path {dir}/tmp/scgi;
  keepalive_timeout 300s;
  keepalive_requests 1000000;
  http2_max_concurrent_streams 128;
  proxy_buffering off;
  upstream backend {{
{servers}    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
  }}
  server {{
    listen 127.0.0.1:{port} ssl http2;
    server_name localhost;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384;
    ssl_session_tickets off;
    ssl_session_cache off;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"""


class HAProxy(Contender):
    """Master-worker mode, one thread, default `http-reuse safe` pooling to the backend,
    the same forwarded headers as the others."""

    name = "HAProxy"
    port = 38443

    def write_config(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        pem = self.dir / f"cert-{self.generation}.pem"
        c, k = self.cert.pem()
        pem.write_text(c + k)
        servers = "".join(f"  server s{i} {e}\n" for i, e in enumerate(self.endpoints))
        conf = HAPROXY_CONF.format(dir=self.dir, port=self.port, pem=pem, servers=servers,
                                   maxconn=(NOFILE - 100) // 2, nofile=NOFILE)
        (self.dir / "haproxy.cfg").write_text(conf)

    def spawn(self):
        return self.procs.spawn(
            ["haproxy", "-W", "-f", self.dir / "haproxy.cfg", "-S",
             f"{self.dir}/master.sock"],
            cpu=self.settings.contender_cpu, log=self.dir / "haproxy.log")

    def reload(self):
        os.kill(self.pid, signal.SIGUSR2)

    def version(self):
        out = subprocess.run(["haproxy", "-vv"], capture_output=True, text=True).stdout
        first = out.splitlines()[0] if out else "?"
        running = next((line.split(": ", 1)[1] for line in out.splitlines()
                        if line.startswith("Running on OpenSSL")), "?")
        return f"{first.split(' - ')[0]}; running on {running}"


HAPROXY_CONF = """\
global
  nbthread 1
  maxconn {maxconn}
  ulimit-n {nofile}
  hard-stop-after 10s
  tune.ssl.cachesize 0
  tune.h2.max-concurrent-streams 128
  stats socket {dir}/admin.sock mode 600 level admin expose-fd listeners

defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 300s
  timeout server 60s
  timeout http-request 10s
  timeout http-keep-alive 300s

frontend bench
  bind 127.0.0.1:{port} ssl crt {pem} alpn h2,http/1.1 ssl-min-ver TLSv1.3 curves X25519 ciphersuites TLS_AES_256_GCM_SHA384 no-tls-tickets
  http-request set-header X-Request-ID %[uuid]
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-For %[src]
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Forwarded-Proto https
  default_backend backend

backend backend
  balance roundrobin
  http-reuse safe
{servers}"""


def all_contenders(settings, procs, run_dir):
    return [Portcullis(settings, procs, run_dir), Nginx(settings, procs, run_dir),
            HAProxy(settings, procs, run_dir)]
