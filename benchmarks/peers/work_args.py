"""The command line every peer runner takes: the work item of bench_e2e.py (its `shape_flags`) and
the run's settings. One definition, so the runners and the benchmark cannot drift apart."""

from __future__ import annotations

import argparse


def work_parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--features", type=int, required=True)
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--instances", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps torch's default")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    return ap
