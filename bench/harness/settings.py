"""Everything a run can be told, from BENCH_* environment variables, with the full-run
defaults; BENCH_QUICK=1 swaps in a short smoke run."""

import os
from dataclasses import dataclass, field
from pathlib import Path

ALL_SCENARIOS = (
    "keepalive", "h2", "latency", "handshake-ecdsa", "handshake-rsa", "big",
    "idle", "propagation", "churn", "scale",
)


def _env(name, default, kind=str):
    value = os.environ.get(name)
    return default if value in (None, "") else kind(value)


@dataclass
class Settings:
    root: Path                       # the repository
    portcullis: Path                 # target/release/portcullis
    tools: Path                      # bench/tools/target/release/bench-tools
    quick: bool
    seconds: float                   # one measured run
    warmup_seconds: float
    pairs: int                       # rounds of A B (A C) per scenario
    max_spread: float                # rerun a scenario once past this spread
    rate: int                        # fixed request rate of the latency scenario
    connections: int                 # keep-alive connections (wrk, h2load)
    rotations: int                   # propagation: certificate replacements
    churn_seconds: int
    churn_idle: int                  # idle connections held through churn
    idle_connections: int            # for RSS per idle TLS connection
    scale_sizes: list = field(default_factory=list)
    scenarios: list = field(default_factory=list)
    contender_cpu: str = "1"
    load_cpu: str = "0"
    note: str = ""

    @classmethod
    def from_env(cls, root):
        quick = _env("BENCH_QUICK", "0") not in ("0", "false", "")
        only = _env("BENCH_ONLY", "")
        scenarios = [s.strip() for s in only.split(",") if s.strip()] or list(ALL_SCENARIOS)
        unknown = [s for s in scenarios if s not in ALL_SCENARIOS]
        if unknown:
            raise SystemExit(f"BENCH_ONLY: unknown scenario(s) {unknown}; "
                             f"choose from {', '.join(ALL_SCENARIOS)}")
        sizes = _env("BENCH_SCALE_SIZES", "1000" if quick else "1000,10000")
        return cls(
            root=root,
            portcullis=root / "target" / "release" / "portcullis",
            tools=root / "bench" / "tools" / "target" / "release" / "bench-tools",
            quick=quick,
            seconds=_env("BENCH_SECONDS", 2.0 if quick else 10.0, float),
            warmup_seconds=_env("BENCH_WARMUP_SECONDS", 1.0 if quick else 3.0, float),
            pairs=_env("BENCH_PAIRS", 2 if quick else 5, int),
            max_spread=_env("BENCH_MAX_SPREAD", 0.05, float),
            rate=_env("BENCH_RATE", 1000, int),
            connections=_env("BENCH_CONNECTIONS", 32, int),
            rotations=_env("BENCH_ROTATIONS", 20 if quick else 100, int),
            churn_seconds=_env("BENCH_CHURN_SECONDS", 8 if quick else 60, int),
            churn_idle=_env("BENCH_CHURN_IDLE", 200 if quick else 1000, int),
            idle_connections=_env("BENCH_IDLE_CONNECTIONS", 1000 if quick else 10000, int),
            scale_sizes=[int(s) for s in sizes.split(",") if s.strip()],
            scenarios=scenarios,
            contender_cpu=_env("BENCH_CONTENDER_CPU", "1"),
            load_cpu=_env("BENCH_LOAD_CPU", "0"),
            note=_env("BENCH_NOTE", ""),
        )
