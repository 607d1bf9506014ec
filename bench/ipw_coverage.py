"""How often a bandit arm's 95 % IPW interval covers the arm's true rate, by the arm's effective users.

Each run assigns users one at a time with the policy's probabilities (the service's floor mixed
in), learns from outcomes in batches as a storefront reports them, and then computes every arm's
IPW estimate with `experiments.stats.ipw` from the logged propensities, as `/results` does. The
baseline is the nominal level, 95 %; the service warns below FEW_EFFECTIVE_USERS.

    .venv/bin/python bench/ipw_coverage.py [--policy ucb1] [--runs 300] [--users 800] [--floor 0.02]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bandits.base import ArmStats, with_floor  # noqa: E402
from bandits.registry import POLICIES, make_policy  # noqa: E402
from experiments.stats.ipw import FEW_EFFECTIVE_USERS, PropensitySums, ipw_arm  # noqa: E402

BINS = ((0, 30), (30, 60), (60, 100), (100, 200), (200, float("inf")))


def one_run(policy_name: str, rates: np.ndarray, users: int, batch: int, floor: float, rng: np.random.Generator) -> list[tuple[float, bool]]:
    """(effective users, whether the interval covered the true rate) for each arm of one experiment."""
    policy = make_policy(policy_name)
    pulls, sums = np.zeros(len(rates)), np.zeros(len(rates))
    arms: list[int] = []
    props: list[float] = []
    ys: list[float] = []
    pending: list[tuple[int, float]] = []
    for u in range(users):
        if u % batch == 0:
            for a, y in pending:
                pulls[a] += 1
                sums[a] += y
            pending = []
        p = with_floor(policy.probabilities(ArmStats.of(list(pulls), list(sums))), floor)
        a = int(rng.choice(len(rates), p=p))
        y = float(rng.random() < rates[a])
        arms.append(a)
        props.append(p[a])
        ys.append(y)
        pending.append((a, y))
    arm_of, p_of, y_of = np.array(arms), np.array(props), np.array(ys)
    out = []
    for a, rate in enumerate(rates):
        mine = arm_of == a
        est = ipw_arm(PropensitySums.of_values(p_of[mine], y_of[mine]), users, 0.05)
        covered = est.ipw_ci is not None and est.ipw_ci.low <= rate <= est.ipw_ci.high
        out.append((est.effective_users or 0.0, covered))
    return out


def main() -> None:
    """Print coverage by bins of effective users."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policy", choices=list(POLICIES), default="ucb1")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--users", type=int, default=800)
    parser.add_argument("--batch", type=int, default=20, help="users between two updates of the arms' statistics")
    parser.add_argument("--floor", type=float, default=0.02)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.08, 0.15])
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rates = np.array(args.rates)
    found = []
    for run in range(args.runs):
        found += one_run(args.policy, rates, args.users, args.batch, args.floor, rng)
        if (run + 1) % 50 == 0:
            print(f"  {run + 1} of {args.runs} runs", flush=True)
    print(f"{args.policy}, floor {args.floor}, rates {args.rates}, {args.users} users, updates every {args.batch}, {args.runs} runs")
    print(f"{'effective users':<18}{'arms':>6}{'coverage of 95 %':>18}")
    for low, high in BINS:
        inside = [c for e, c in found if low <= e < high]
        if inside:
            flag = "  (warned)" if high <= FEW_EFFECTIVE_USERS else ""
            print(f"{f'[{low}, {high})':<18}{len(inside):>6}{np.mean(inside):>18.2f}{flag}")


if __name__ == "__main__":
    main()
