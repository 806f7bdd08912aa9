#!/usr/bin/env bash
# Install the Debian packages kubeling needs, only when something is missing.
# Runs as root on Debian bookworm (make up / make test call it; `--test` adds what
# only the tests need).
set -euo pipefail
need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_cmd dockerd || need+=(docker.io)
have_cmd iptables-restore || need+=(iptables)
[ -x /bin/busybox ] || need+=(busybox-static)
have_cmd ip || need+=(iproute2)
have_cmd curl || need+=(curl)
have_cmd conntrack || need+=(conntrack)
have_cmd etcd || need+=(etcd-server)
have_cmd etcdctl || need+=(etcd-client)
have_cmd haproxy || need+=(haproxy)
[ -d /usr/lib/cni ] || need+=(containernetworking-plugins)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
# headless browser for the dashboard's e2e test (tests/e2e/test_dashboard.py)
if [ "${1:-}" = "--test" ]; then
  [ -x /usr/bin/chromium ] || need+=(chromium)
  [ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "kubeling needs root to install: ${need[*]}" >&2
    exit 1
  fi
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# iptables must be the nf_tables build everywhere (never mix with legacy).
if have_cmd update-alternatives && [ -e /usr/sbin/iptables-nft ]; then
  update-alternatives --set iptables /usr/sbin/iptables-nft >/dev/null 2>&1 || true
fi
