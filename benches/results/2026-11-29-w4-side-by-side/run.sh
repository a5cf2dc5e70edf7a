#!/bin/bash
# Side by side: peers then rask, same machine state, medians of 3.
cd /work/shared/peers
export PEERS_DATA=$HOME/.cache/rask/data
RUN=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=/work/shared/peers PYTHONWARNINGS=ignore PYTHONDONTWRITEBYTECODE=1)
date > /tmp/sbs/times
W4_ALGOS=lbfgs,newton,gradient_descent,proximal_grad "${RUN[@]}" ~/.cache/rask-peers/.venv/bin/python w4_glm.py > /tmp/sbs/peers.jsonl 2> /tmp/sbs/peers.err
date >> /tmp/sbs/times
W4_ALGOS=admm W4_CAP_SECONDS=60 W4_SOFT_CAP_SECONDS=60 "${RUN[@]}" ~/.cache/rask-peers/.venv/bin/python w4_glm.py > /tmp/sbs/peers-admm.jsonl 2> /tmp/sbs/peers-admm.err
date >> /tmp/sbs/times
cd /work/main
./target/release/rask bench w4 --data $PEERS_DATA > /tmp/sbs/rask-threads.jsonl 2> /tmp/sbs/rask-threads.err
./target/release/rask bench w4 --data $PEERS_DATA --scheduler local-cluster > /tmp/sbs/rask-cluster.jsonl 2> /tmp/sbs/rask-cluster.err
date >> /tmp/sbs/times
