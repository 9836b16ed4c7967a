"""The benchmark harness behind bench/run.sh: Portcullis side by side with nginx and
HAProxy on this machine. Python 3 standard library only.

Modules, in the order a run uses them:
  settings    durations, counts, cores and ports, from BENCH_* environment variables
  procs       starting pinned processes, reading their CPU time and memory, cleanup
  certs       certificates made with openssl (and in bulk with bench-tools)
  contenders  Portcullis, nginx and HAProxy: configuration, start, stop, changes
  load        wrk, h2load, oha and bench-tools clients, and what they print
  scenarios   the measurements: paired throughput runs, latency, handshakes,
              propagation, churn, idle connections, scale
  report      medians and ratios, the Markdown written to bench/results/latest.md
"""
