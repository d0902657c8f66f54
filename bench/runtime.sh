#!/usr/bin/env bash
# berth-runtime side by side with runc, youki and crun: `RUNTIME run -b BUNDLE ID` of
# /bin/true (create + start + wait + delete), medians from hyperfine, on this machine's hybrid
# cgroups and in a private mount namespace with a bare cgroup2 mount (where crun works).
# Also peak RSS of one `run` (GNU time). Needs ../shared/peers-setup.sh to have run.
# usage: bench/runtime.sh [RUNS]     prints a markdown table
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p berth-runtime
berth=$PWD/target/release/berth-runtime
runs=${1:-40}
work=${PEERS_DIR:-${TMPDIR:-/tmp}/berth-peers}
youki=$work/youki/bin/youki
b=$(mktemp -d)
trap 'rm -rf "$b"' EXIT
mkdir -p "$b/bundle/rootfs/bin"
cp /bin/busybox "$b/bundle/rootfs/bin/"
ln -s busybox "$b/bundle/rootfs/bin/true"
ln -s busybox "$b/bundle/rootfs/bin/sh"
(cd "$b/bundle" && runc spec)
python3 - "$b/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c['process']['terminal'] = False
c['process']['args'] = ['/bin/true']
c['linux'].pop('resources', None)
json.dump(c, open(p, 'w'))
PY
declare -A cmd=([berth]="$berth" [runc]="runc" [youki]="$youki" [crun]="crun")
out=$b/out; mkdir -p "$out"
for r in berth runc youki; do
  [ -x "${cmd[$r]}" ] || command -v "${cmd[$r]}" >/dev/null || continue
  timeout 300 hyperfine -N -w 3 -r "$runs" --export-json "$out/$r-hybrid.json" "${cmd[$r]} --root $b/state-$r run -b $b/bundle h-$r" >/dev/null 2>&1
  /usr/bin/time -f %M -o "$out/$r-rss" "${cmd[$r]}" --root "$b/state-$r" run -b "$b/bundle" rss-$r >/dev/null 2>&1
done
unshare -m --propagation private bash -c "
  umount -R /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup || exit 1
  for r in berth runc crun; do
    case \$r in berth) c='$berth';; runc) c=runc;; crun) c=crun;; esac
    timeout 120 hyperfine -N -w 3 -r $runs --export-json $out/\$r-v2.json \"\$c --root $b/v2-\$r run -b $b/bundle v-\$r\" >/dev/null 2>&1
  done"
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def med(name):
    try: return json.load(open(os.path.join(out, name + '.json')))['results'][0]['median'] * 1000
    except Exception: return None
def rss(name):
    try: return int(open(os.path.join(out, name + '-rss')).read().split()[-1])
    except Exception: return None
fmt = lambda v: '%.1f ms' % v if v else 'fails'
print('| runtime | hybrid v1+v2 | cgroup2 only | peak RSS (hybrid) |')
print('|---|---|---|---|')
for r in ('berth', 'crun', 'youki', 'runc'):
    m = rss(r)
    print('| %s | %s | %s | %s |' % (r, fmt(med(r + '-hybrid')), fmt(med(r + '-v2')), '%d KiB' % m if m else '-'))
for a, b_, lay in (('berth', 'crun', 'v2'), ('berth', 'youki', 'hybrid'), ('berth', 'runc', 'hybrid')):
    x, y = med(a + '-' + lay), med(b_ + '-' + lay)
    print('%s/%s (%s): %s' % (a, b_, lay, '%.2f' % (x / y) if x and y else 'n/a'))
PY
