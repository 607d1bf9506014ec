"""Cumulative regret of each bandit policy on Bernoulli arms, against uniform allocation.

    .venv/bin/python bench/regret.py [--rounds 10000] [--runs 200] [--means 0.10 0.12 0.15]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bandits.registry import POLICIES  # noqa: E402
from bandits.simulation import simulate  # noqa: E402

TEXTBOOK = {"thompson": "30-45", "ucb1": "150-165", "epsilon_greedy": "60-80", "uniform": "exactly rounds x mean gap"}


def main() -> None:
    """Print the regret table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--means", type=float, nargs="+", default=[0.10, 0.12, 0.15])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"Bernoulli arms {args.means}, {args.rounds:,} rounds, {args.runs} seeded runs (seed {args.seed})")
    print(f"{'policy':<16}{'regret':>10}{'± s.e.':>9}{'vs uniform':>12}{'best-arm share':>16}{'seconds':>9}   textbook")
    rows = []
    for name in [n for n in POLICIES if n != "uniform"] + ["uniform"]:  # uniform last: the baseline each is compared with
        started = time.perf_counter()
        rows.append((simulate(name, args.means, args.rounds, args.runs, args.seed), time.perf_counter() - started))
    uniform = rows[-1][0].mean
    for result, seconds in rows:
        print(f"{result.policy:<16}{result.mean:>10.1f}{result.std_error:>9.1f}{result.mean / uniform:>11.2f}x{result.final_share_of_best:>16.3f}{seconds:>9.1f}   {TEXTBOOK[result.policy]}")


if __name__ == "__main__":
    main()
