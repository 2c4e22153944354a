#!/usr/bin/env bash
# Installs the benchmark peers and load tools from Debian (root). Called by `npm run bench` when
# one is missing; not part of CI (CI runs tests, not benchmarks).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
pkgs=(haproxy nginx-light libnginx-mod-stream wrk iperf3 socat)
# Optional: DNS load and backend, when the distribution has them.
for opt in dnsperf dnsmasq-base; do
  if apt-cache show "$opt" >/dev/null 2>&1; then pkgs+=("$opt"); fi
done
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
# The Debian packages start system services; the bench runs its own instances in namespaces.
for svc in haproxy nginx; do
  systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
done
echo "bench tools installed: ${pkgs[*]}"
