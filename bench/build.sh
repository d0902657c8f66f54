#!/usr/bin/env bash
# `berth build` side by side with `podman build` (buildah) and `docker build`: a Dockerfile of
# 8 steps (ENV, WORKDIR, a COPY of 3000 files, several RUNs, a COPY of one file, CMD) on a
# busybox base imported into each, cold (--no-cache) and fully cached. Medians from hyperfine.
# Needs ../shared/peers-setup.sh to have run (podman, docker).
# usage: bench/build.sh [RUNS]     prints a markdown table
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p berth-cli -p berth-runtime -p berth-monitor -p berth-init
berth_bin=$PWD/target/release/berth
runs=${1:-5}
b=$(mktemp -d)
berth="$berth_bin --root $b/root --runroot $b/run"
cleanup() {
  $berth ps -aq | xargs -r $berth rm -f >/dev/null 2>&1
  podman rmi -f bench-build-base bench-build-out >/dev/null 2>&1
  docker rmi -f bench-build-base bench-build-out >/dev/null 2>&1
  rm -rf "$b"
}
trap cleanup EXIT

mkdir -p "$b/base/bin" "$b/base/etc" "$b/base/tmp"
cp /bin/busybox "$b/base/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$b/base/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$b/base/etc/passwd"
echo 'root:x:0:' > "$b/base/etc/group"
tar -C "$b/base" -cf "$b/base.tar" .
$berth import "$b/base.tar" bench-build-base >/dev/null
podman import -q "$b/base.tar" bench-build-base >/dev/null
docker import "$b/base.tar" bench-build-base >/dev/null

ctx=$b/ctx
mkdir -p "$ctx/files"
for i in $(seq 1 3000); do
  d=$ctx/files/d$((i % 30))
  mkdir -p "$d"
  echo "file $i" > "$d/f$i"
done
echo "config" > "$ctx/app.conf"
cat > "$ctx/Dockerfile" <<'EOF'
FROM bench-build-base
ENV APP=/app
WORKDIR /app
COPY files/ /app/files/
RUN find /app/files -type f | wc -l > /app/count
RUN echo built > /app/built && sed -n 1p /app/count
COPY app.conf /app/app.conf
CMD ["cat", "/app/count"]
EOF

out=$b/out; mkdir -p "$out"
declare -A cold=(
  [berth]="$berth build --no-cache -t bench-build-out $ctx"
  [podman]="podman build --no-cache --network=none -t bench-build-out $ctx"
  [docker]="docker build --no-cache -t bench-build-out $ctx"
)
declare -A cached=(
  [berth]="$berth build -t bench-build-out $ctx"
  [podman]="podman build --network=none -t bench-build-out $ctx"
  [docker]="docker build -t bench-build-out $ctx"
)
for s in berth podman docker; do
  timeout 900 hyperfine -N -w 1 -r "$runs" --export-json "$out/$s-cold.json" "${cold[$s]}" >/dev/null 2>&1 \
    || echo "$s: cold build failed" >&2
  timeout 600 hyperfine -N -w 1 -r $((runs * 2)) --export-json "$out/$s-cached.json" "${cached[$s]}" >/dev/null 2>&1 \
    || echo "$s: cached build failed" >&2
done
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def med(name):
    try: return json.load(open(os.path.join(out, name + '.json')))['results'][0]['median']
    except Exception: return None
fmt = lambda v: '-' if v is None else f'{v:.3f} s'
ratio = lambda a, b: '-' if a is None or b is None else f'{a / b:.2f}'
print('| build | berth | podman | docker | berth/podman | berth/docker |')
print('|---|---|---|---|---|---|')
for kind in ('cold', 'cached'):
    b, p, d = (med(f'{s}-{kind}') for s in ('berth', 'podman', 'docker'))
    print(f'| {kind} | {fmt(b)} | {fmt(p)} | {fmt(d)} | {ratio(b, p)} | {ratio(b, d)} |')
PY
