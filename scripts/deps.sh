#!/usr/bin/env bash
# Installs what building and testing berth needs on a Debian machine (run as root).
# Idempotent: only calls apt-get when something is missing.
# With --peers, also the engines the interop tests drive berth-runtime with.
set -euo pipefail
# xz-utils, bzip2, zstd: the build tests make compressed archives with tar.
pkgs=(busybox-static libseccomp-dev pkg-config iproute2 nftables iptables xz-utils bzip2 zstd)
if [ "${1:-}" = --peers ]; then
  pkgs+=(podman netavark containerd docker.io runc crun skopeo tar docker-registry)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
