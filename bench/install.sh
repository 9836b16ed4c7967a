#!/usr/bin/env bash
# Installs what the benchmarks need, once: nginx, HAProxy, wrk and h2load from Debian,
# oha from crates.io. Safe to run again: it only installs what is missing.
#
# Debian starts a package's service on install. The benchmark starts its own servers on
# loopback with its own configurations, so a policy-rc.d that answers 101 ("action not
# allowed") is in place while apt runs, and any service that started anyway is stopped
# and disabled afterwards.
set -euo pipefail

need_apt=()
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v taskset >/dev/null || need_apt+=(util-linux)

if ((${#need_apt[@]})); then
  echo "bench: installing from Debian: ${need_apt[*]}"
  policy=/usr/sbin/policy-rc.d
  saved=""
  if [[ -e $policy ]]; then saved=$(mktemp); cp -p "$policy" "$saved"; fi
  restore_policy() {
    if [[ -n $saved ]]; then mv "$saved" "$policy"; else rm -f "$policy"; fi
  }
  trap restore_policy EXIT
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  restore_policy
  trap - EXIT
fi

# Whatever started despite the policy (or was started before): stop it and keep it off.
for svc in nginx haproxy; do
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  else
    # No systemd here: the init scripts are the service manager.
    if [[ -x /etc/init.d/$svc ]]; then /etc/init.d/$svc stop >/dev/null 2>&1 || true; fi
    command -v update-rc.d >/dev/null && update-rc.d "$svc" disable >/dev/null 2>&1 || true
  fi
done

if ! command -v oha >/dev/null && [[ ! -x $HOME/.cargo/bin/oha ]]; then
  echo "bench: installing oha from crates.io (cargo install --locked oha; a few minutes)"
  cargo install --locked --quiet oha
fi
