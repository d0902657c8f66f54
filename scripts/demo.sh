#!/usr/bin/env bash
# berth's main job while only the runtime exists: build berth-runtime, make an OCI bundle
# from busybox, and run it in a container with its own namespaces and cgroup.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/build-runtime.sh
rt="$PWD/target/release/berth-runtime"
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done
"$rt" spec --bundle "$work"
cat > "$work/rootfs/demo.sh" <<'SH'
echo "hello from $(hostname): pid $$, uid $(id -u)"
echo "namespaces: $(ls /proc/self/ns | tr '\n' ' ')"
echo "cgroup: $(grep memory /proc/self/cgroup)"
echo "root: $(ls / | tr '\n' ' ')"
SH
# Not a terminal, and the program above.
sed -i -e 's/"terminal": true/"terminal": false/' -e 's|"sh"$|"sh", "/demo.sh"|' "$work/config.json"
"$rt" --root "$work/state" run --bundle "$work" "demo-$$"
