#!/usr/bin/env bash
# Fetches Debian's source package of the *installed* DPDK version and keeps the SWX pipeline's
# private headers (rte_swx_pipeline_internal.h, rte_swx_pipeline_spec.h), which the C code
# emitted by rte_swx_pipeline_codegen() includes and libdpdk-dev does not ship.
# Uses a private apt sources list, so the system's apt configuration stays untouched.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest="$here/build/dpdk-headers"
ver=$(dpkg-query -W -f='${Version}' libdpdk-dev)
if [ -f "$dest/.version" ] && [ "$(cat "$dest/.version")" = "$ver" ]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. /etc/os-release
codename=${VERSION_CODENAME:-bookworm}
cat > "$work/sources.list" <<EOS
deb-src http://deb.debian.org/debian $codename main
deb-src http://deb.debian.org/debian $codename-updates main
deb-src http://deb.debian.org/debian-security $codename-security main
EOS
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
      -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root")
echo "[setup] fetching DPDK $ver source headers"
apt-get "${opts[@]}" update -qq
(cd "$work" && apt-get "${opts[@]}" source --download-only -qq "dpdk=$ver" >/dev/null)
orig=$(ls "$work"/dpdk_*.orig.tar.* | head -1)
mkdir -p "$work/x"
tar -C "$work/x" -xf "$orig" --wildcards '*/lib/pipeline/*.h' '*/lib/table/*.h'
rm -rf "$dest"; mkdir -p "$dest"
cp "$work"/x/*/lib/pipeline/*.h "$dest/"
echo "$ver" > "$dest/.version"
echo "[setup] DPDK headers in $dest"
