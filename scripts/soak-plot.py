#!/usr/bin/env python3
"""Draws `make bench`'s soak samples (CSV from benches/sections/soak.rs) into one PNG:
resident memory, CPU, file descriptors, flow-table fill, attached interfaces, the flows tracked
and series exported, and the export requests per sample (accepted, failed) over time.

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
    (("flows", "series"), "flows tracked, series"),
    (("exports_ok", "exports_failed"), "export requests per sample"),
]

# Cumulative columns drawn as their increase per sample.
PER_SAMPLE = {"exports_ok", "exports_failed"}


def column(rows, key):
    values = [float(r[key]) for r in rows]
    if key in PER_SAMPLE:
        return [0.0] + [b - a for a, b in zip(values, values[1:])]
    return values


def main(src: str, out: str) -> None:
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{src}: no samples")
    minutes = [float(r["t_s"]) / 60 for r in rows]
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(10, 16), sharex=True)
    for ax, (keys, label) in zip(axes, PANELS):
        keys = keys if isinstance(keys, tuple) else (keys,)
        # Older CSVs lack the later columns: their panels stay empty.
        for key in (k for k in keys if k in rows[0]):
            ax.plot(minutes, column(rows, key), linewidth=1.2, label=key)
        if len(keys) > 1 and ax.lines:
            ax.legend(fontsize=7, loc="upper left")
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
