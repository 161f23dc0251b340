#!/usr/bin/env python3
"""Draws `make bench`'s soak samples (CSV from benches/sections/soak.rs) into one PNG:
resident memory, CPU, file descriptors, flow-table fill and attached interfaces over time.

Usage: soak-plot.py SAMPLES.csv OUT.png (matplotlib from the test venv, `make setup`)."""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PANELS = [
    ("rss_mib", "resident memory (MiB)"),
    ("cpu_pct", "CPU (% of one core)"),
    ("fds", "open file descriptors"),
    ("fill_ratio", "flow table fill (ratio)"),
    ("interfaces", "attached interfaces"),
]


def main(src: str, out: str) -> None:
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{src}: no samples")
    minutes = [float(r["t_s"]) / 60 for r in rows]
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(10, 12), sharex=True)
    for ax, (key, label) in zip(axes, PANELS):
        ax.plot(minutes, [float(r[key]) for r in rows], linewidth=1.2)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle("otel-netprobe soak: agent under traffic, veth churn, Collector and API server restarts")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
