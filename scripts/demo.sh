#!/usr/bin/env bash
# berth's main job, no internet: build berth (CLI, runtime, monitor, init), make a base
# image from busybox-static with `berth import`, build a demo image on it from a
# Dockerfile with `berth build`, and run it with `berth run`, then a detached container
# with its log, in a store of its own that is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release -q -p berth-cli -p berth-runtime -p berth-monitor -p berth-init -p berth-dns
berth="$PWD/target/release/berth"
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
b() { "$berth" --root "$work/root" --runroot "$work/run" "$@"; }
trap 'b rm -f demo-web >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
mkdir -p "$work/fs/bin" "$work/fs/etc"
cp /bin/busybox "$work/fs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/fs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/fs/etc/passwd"
tar -C "$work/fs" -cf "$work/fs.tar" .
b import -c 'CMD ["sh"]' "$work/fs.tar" busybox:demo >/dev/null
mkdir "$work/ctx"
cat > "$work/ctx/demo.sh" <<'SH'
echo "hello from $(hostname): pid $$, uid $(id -u)"
echo "namespaces: $(ls /proc/self/ns | tr '\n' ' ')"
echo "memory limit: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
echo "built: $(cat /etc/built)"
SH
cat > "$work/ctx/Dockerfile" <<'DF'
FROM busybox:demo AS stamp
RUN date -u +%FT%TZ > /built
FROM busybox:demo
COPY --from=stamp /built /etc/built
COPY demo.sh /demo.sh
CMD ["sh", "/demo.sh"]
DF
b build -t demo:1 "$work/ctx"
b images
b run --rm --memory 64m demo:1
b run -d --name demo-web demo:1 sh -c 'for i in 1 2 3; do echo tick $i; sleep 0.1; done' >/dev/null
b wait demo-web >/dev/null
b ps -a
b logs demo-web
