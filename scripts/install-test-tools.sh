#!/usr/bin/env bash
# Installs, from Debian, the tools the demo and the end-to-end tests run (iptables, iproute2,
# conntrack, curl, dig, nc, socat, iperf3) when one is missing. Run by `npm run demo` and
# `npm run test:e2e` before they start, and by CI. Needs root and apt-get; without them it only
# names what is missing, and the demo or tests then stop with their own clear error.
set -euo pipefail
missing=()
for cmd in iptables iptables-restore ip curl dig nc socat iperf3 conntrack; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing tools: ${missing[*]} (install iptables iproute2 conntrack curl dnsutils netcat-openbsd socat iperf3, as root)" >&2
  exit 0
fi
echo "installing missing tools (${missing[*]}) from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends iptables iproute2 conntrack curl dnsutils netcat-openbsd socat iperf3 >/dev/null
