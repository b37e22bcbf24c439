#!/usr/bin/env bash
# A/B of two builds through a FUSE mount, in alternating runs on this
# machine (its speed drifts, so only alternating runs compare):
#
#   benches/ab-mount.sh OLD_DIR NEW_DIR [PAIRS] [write|small]
#
# OLD_DIR and NEW_DIR each hold a release `peergos-daemon` and
# `peergos-fuse` (copy them out of target/release before and after a
# change). Each run starts that build's daemon on a fresh data directory,
# signs up with target/release/peergos-shell, mounts, and either writes
# 1 GiB with Python in 1 MiB `os.write`s and an `fsync` (write: MiB/s and
# the mount's CPU seconds) or creates 300 files of 4 KiB (small: files/s).
# Needs fuse3, python3 and 1 GiB of disk per run (2 x PAIRS GiB).
set -euo pipefail
old=${1:?OLD_DIR}
new=${2:?NEW_DIR}
pairs=${3:-3}
work=${4:-write}
here=$(cd "$(dirname "$0")/.." && pwd)
shell=$here/target/release/peergos-shell
tmp=$(mktemp -d)
port=18124
export PEERGOS_PASSWORD=ab-mount-password PEERGOS_SERVER=http://127.0.0.1:$port
cleanup() {
    fusermount3 -u "$tmp/mnt" 2>/dev/null || true
    [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

run() {
    local bin=$1
    # A new data directory per run, all removed at exit: removing the last
    # run's ~1,200 block files just before this one's would slow its file
    # creation on ext4 without a journal (the inode allocator skips, one
    # inode-table lookup each, inodes freed in the last minutes), which
    # this machine's disk is.
    local data=$tmp/data.$2
    mkdir -p "$data" "$tmp/mnt"
    "$bin/peergos-daemon" --data-dir "$data" --listen 127.0.0.1:$port \
        --gc-interval-hours 0 >"$tmp/daemon.log" 2>&1 &
    daemon=$!
    for _ in $(seq 50); do
        curl -sf "$PEERGOS_SERVER/metrics" >/dev/null 2>&1 && break
        sleep 0.1
    done
    "$shell" -u ab signup >/dev/null
    "$bin/peergos-fuse" -s "$PEERGOS_SERVER" -u ab --background \
        --log-file "$tmp/fuse.log" "$tmp/mnt" >/dev/null
    local mount
    mount=$(pgrep -n peergos-fuse)
    python3 - "$tmp/mnt" "$work" "$mount" <<'PY'
import os, sys, time
mnt, work, pid = sys.argv[1], sys.argv[2], sys.argv[3]
def cpu():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
start_cpu, t = cpu(), time.time()
if work == "write":
    piece = os.urandom(1 << 20)
    fd = os.open(f"{mnt}/big", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(1024):
        os.write(fd, piece)
    os.fsync(fd)
    os.close(fd)
    print(f"{1024 / (time.time() - t):.0f} MiB/s, mount CPU {cpu() - start_cpu:.2f} s")
else:
    os.mkdir(f"{mnt}/small")
    data = os.urandom(4096)
    for i in range(300):
        with open(f"{mnt}/small/f{i}", "wb") as f:
            f.write(data)
    print(f"{300 / (time.time() - t):.0f} files/s")
PY
    fusermount3 -u "$tmp/mnt"
    kill "$daemon"
    wait "$daemon" 2>/dev/null || true
    daemon=
}

runs=0
for _ in $(seq "$pairs"); do
    for bin in "$old" "$new"; do
        runs=$((runs + 1))
        echo "$bin: $(run "$bin" "$runs")"
    done
done
