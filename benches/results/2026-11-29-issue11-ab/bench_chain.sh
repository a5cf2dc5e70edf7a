#!/usr/bin/env bash
set -u
OUT=${OUT:-/tmp/abc}
mkdir -p $OUT
for round in 1 2 3 4 5 6 7 8; do
  for v in base new; do
    W1_N_LEAVES=2000 PEERS_REPEATS=5 /tmp/rask-$v bench w1 --scheduler local-cluster > $OUT/w1-cluster-$v-$round.jsonl 2>/dev/null
  done
done
touch $OUT/DONE
