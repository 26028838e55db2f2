#!/usr/bin/env python3
"""Before/after transfer benchmark, interleaved: every round runs each mode with both
binaries back to back (the order alternating per round), timed like transfer_bench's own
`transfer()` (from the receiver's address line to the end of its report).

Usage: before_after.py BEFORE_BINARY AFTER_BINARY MIB ROUNDS (two transfer_bench builds)."""
import statistics, subprocess, sys, time

before, after, mib, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
size = mib << 20
modes = ["raw-tcp", "tokio", "tokio-mt", "smol", "blocking"]

def transfer(exe, mode):
    receiver = subprocess.Popen([exe, "receive", mode, str(size)], stdout=subprocess.PIPE, text=True)
    address = receiver.stdout.readline().strip()
    started = time.monotonic()
    sender = subprocess.Popen([exe, "send", mode, address, str(size)], stdout=subprocess.PIPE, text=True)
    receiver.stdout.read()
    elapsed = time.monotonic() - started
    sender.communicate()
    receiver.wait()
    if sender.returncode or receiver.returncode:
        raise SystemExit(f"{exe} {mode}: sender {sender.returncode}, receiver {receiver.returncode}")
    return mib / elapsed

rates = {(b, m): [] for b in ("before", "after") for m in modes}
for r in range(rounds):
    order = [("before", before), ("after", after)]
    if r % 2:
        order.reverse()
    for mode in modes:
        for name, exe in order:
            rates[(name, mode)].append(transfer(exe, mode))
    print(f"round {r + 1}: " + ", ".join(f"{m} {rates[('before', m)][-1]:.0f}/{rates[('after', m)][-1]:.0f}" for m in modes), flush=True)

raw = [(a + b) / 2 for a, b in zip(rates[("before", "raw-tcp")], rates[("after", "raw-tcp")])]
raw_median = statistics.median(raw)
print(f"\n{mib} MiB, {rounds} rounds; raw TCP median {raw_median:.0f} MiB/s (both binaries' raw runs averaged per round)")
print(f"{'mode':<10} {'before':>8} {'after':>8} {'before/raw':>11} {'after/raw':>10} {'after/before per round':>24}")
for mode in modes:
    b, a = rates[("before", mode)], rates[("after", mode)]
    per_round = statistics.median([x / y for x, y in zip(a, b)])
    print(f"{mode:<10} {statistics.median(b):>8.0f} {statistics.median(a):>8.0f} {statistics.median(b) / raw_median:>10.2f}x {statistics.median(a) / raw_median:>9.2f}x {per_round:>23.2f}x")
