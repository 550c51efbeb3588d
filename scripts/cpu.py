#!/usr/bin/env python3
"""Prints the CPU seconds (user + system) the given PIDs and their direct
children (PostgreSQL's backends are children of the postmaster) have used
so far, then the host's idle and total jiffies from /proc/stat:
    scripts/cpu.py PID... -> "<cpu seconds> <idle jiffies> <total jiffies>"
Two samples around a measured window give CPU per operation and idle."""
import os
import sys

tick = os.sysconf("SC_CLK_TCK")
want = set(sys.argv[1:])
total = 0
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if p in want or f[1] in want:
        total += int(f[11]) + int(f[12])
cpu = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
print(total / tick, cpu[3] + cpu[4], sum(cpu))
