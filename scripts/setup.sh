#!/usr/bin/env bash
# Sets up everything p4cs needs on a Debian 12 machine. Idempotent: a second run only checks.
#   - Debian packages (DPDK 22.11 runtime + dev, build tools, networking tools, test peers)
#   - DPDK's SWX pipeline source headers of the installed version (needed to compile the
#     C code that the SWX code generator emits from a .spec)
#   - the embedded target's C daemon (dataplane/)
#   - the Python virtualenv (.venv) with p4cs and its test dependencies
#   - with --test: a separate virtualenv for p4runtime-shell (it pins an old protobuf)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

log() { printf '[setup] %s\n' "$*"; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

APT_PKGS=(dpdk libdpdk-dev build-essential pkg-config iproute2 ethtool iputils-ping
          curl wrk nginx-light haproxy tcpdump libpcap-dev libnuma-dev python3-venv python3-dev
          dpkg-dev xz-utils procps psmisc mininet nftables redis-server)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nginx/haproxy are test peers and benchmark peers, redis-server is started by the tests that
# need it (controller high availability): none of them runs as a system service.
for svc in nginx haproxy redis-server; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done

# --- DPDK SWX source headers matching the installed library -------------------------------
"$here/scripts/dpdk-headers.sh"

# --- Python virtualenv ---------------------------------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.p4cs-deps
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[test]"
  touch "$stamp"
elif [ setup.py -nt "$stamp" ] || [ -n "$(find host -name '*.c' -newer "$stamp" -print -quit)" ]; then
  # the package's optional C extensions changed since the editable install built them
  log "building the package's C extensions"
  .venv/bin/python setup.py -q build_ext --inplace
  touch "$stamp"
fi

# --- the embedded DPDK target's daemon -----------------------------------------------------
log "building the data-plane daemon"
make -s -C dataplane

if [ $want_test = 1 ]; then
  # p4runtime-shell pins protobuf 3.20 and p4runtime 1.4: it gets its own virtualenv.
  if [ ! -x .venv-p4rt-shell/bin/python ]; then
    log "creating .venv-p4rt-shell for the p4runtime-shell interoperability test"
    "$PY" -m venv .venv-p4rt-shell
    .venv-p4rt-shell/bin/pip install -q p4runtime-shell
  fi
fi
log "ready"
