#!/usr/bin/env bash
# Peers and Rask back to back on one machine, one workload after the other:
#
#   bash benches/side_by_side.sh OUT_DIR w7 w8 w6
#
# For each workload: the peers' script (../shared/peers, its virtualenv and
# data under $PEERS_HOME, made by `bash ../shared/peers/run_all.sh data`),
# then `rask bench` on threads, then on a 2-worker LocalCluster. Writes
# OUT_DIR/<w>-peers.jsonl, <w>-rask.jsonl, <w>-rask-cluster.jsonl and the
# load averages before and after. Needs `cargo build --release --bin rask`.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$1"; shift
PEERS_DIR="$(cd ../shared/peers && pwd)"
WORK="${PEERS_HOME:-$HOME/.cache/rask-peers}"
DATA="$WORK/data"
VPY="$WORK/.venv/bin/python"
RASK=target/release/rask
for need in "$VPY" "$DATA/MANIFEST.json" "$RASK"; do
    [ -e "$need" ] || { echo "missing $need (see the header of $0)" >&2; exit 2; }
done
mkdir -p "$OUT"
cut -d' ' -f1-3 /proc/loadavg > "$OUT/uptime-start"
for w in "$@"; do
    script=$(cd "$PEERS_DIR" && ls ${w}_*.py | head -1)
    echo "== $w: peers ($script)" >&2
    (cd "$PEERS_DIR" && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH="$PEERS_DIR" \
        PYTHONWARNINGS=ignore PYTHONDONTWRITEBYTECODE=1 PEERS_DATA="$DATA" \
        "$VPY" "$script") > "$OUT/$w-peers.jsonl"
    echo "== $w: rask threads" >&2
    "$RASK" bench "$w" --data "$DATA" > "$OUT/$w-rask.jsonl"
    echo "== $w: rask local-cluster" >&2
    "$RASK" bench "$w" --data "$DATA" --scheduler local-cluster > "$OUT/$w-rask-cluster.jsonl"
done
cut -d' ' -f1-3 /proc/loadavg > "$OUT/uptime-end"
