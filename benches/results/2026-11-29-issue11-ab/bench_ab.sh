#!/usr/bin/env bash
# A/B: previous commit (05eb8ba) vs this session's, alternating, in one run.
set -u
DATA=$HOME/.cache/rask/data
OUT=${OUT:-/tmp/ab}
mkdir -p $OUT
for round in 1 2 3 4; do
  for v in base new; do
    bin=/tmp/rask-$v
    $bin bench w1 > $OUT/w1-local-$v-$round.jsonl 2>/dev/null
    $bin bench w1 --scheduler local-cluster > $OUT/w1-cluster-$v-$round.jsonl 2>/dev/null
    $bin bench w3 --data $DATA > $OUT/w3-local-$v-$round.jsonl 2>/dev/null
    $bin bench w3 --data $DATA --scheduler local-cluster > $OUT/w3-cluster-$v-$round.jsonl 2>/dev/null
  done
done
echo done
