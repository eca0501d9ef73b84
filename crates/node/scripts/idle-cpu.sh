#!/usr/bin/env bash
# Idle CPU of a rendezvous node holding a 3-member quorum, and of one member.
set -euo pipefail
BIN=${BIN:-./target/release/rdht}   # run from the repository root after cargo build --release -p node
D=$(mktemp -d)
RID=$($BIN keygen --data-dir $D/r)
IDS=(); for i in 1 2 3; do IDS+=($($BIN keygen --data-dir $D/m$i)); done
{ echo 'threshold = 2'; for i in 1 2 3; do printf '[[member]]\npeer_id = "%s"\naddr = "/ip4/127.0.0.1/tcp/%d"\n' ${IDS[$((i-1))]} $((47100+i)); done; } > $D/q.toml
$BIN rendezvous --listen /ip4/127.0.0.1/tcp/47100 --data-dir $D/r >$D/r.log 2>&1 & RP=$!
PIDS=($RP)
for i in 1 2 3; do $BIN quorum --data-dir $D/m$i --quorum $D/q.toml --listen /ip4/127.0.0.1/tcp/$((47100+i)) --rendezvous /ip4/127.0.0.1/tcp/47100/p2p/$RID >$D/m$i.log 2>&1 & PIDS+=($!); done
sleep 5
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
T=${T:-30}
A=$(cpu $RP); B=$(cpu ${PIDS[1]}); sleep $T; A2=$(cpu $RP); B2=$(cpu ${PIDS[1]})
HZ=$(getconf CLK_TCK)
awk -v t=$((A2-A)) -v hz=$HZ -v s=$T 'BEGIN { printf "rendezvous idle: %.3f%% of a core over %ss (%d ticks)\n", t*100/hz/s, s, t }'
awk -v t=$((B2-B)) -v hz=$HZ -v s=$T 'BEGIN { printf "member idle:     %.3f%% of a core over %ss (%d ticks)\n", t*100/hz/s, s, t }'
echo "registrations accepted: $(grep -c registered $D/r.log || true)"
kill ${PIDS[@]}; wait 2>/dev/null || true
rm -rf $D
