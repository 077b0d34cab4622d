"""The verdict's error rates, by simulation with known truth: `python -m cnnlab.claims.calibration`.

Each simulated reproduction draws per-seed accuracies from a normal distribution with a chosen true mean and
spread and hands them, in seed order, to the very ``judge`` the reproduction uses; ``judge`` stops at the first
look that decides, as ``seeds=auto`` does. The tests (tests/test_claims.py) hold these rates to the verdict's
contract, and docs/claims.md quotes this module's printout.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass

import numpy as np

from cnnlab.claims.stats import Design
from cnnlab.claims.verdict import EXCEEDS, NOT_REPRODUCED, REPRODUCED, judge


@dataclass(frozen=True)
class Rates:
    reproduced: float  # "reproduced" or "reproduced, exceeds"
    not_reproduced: float
    inconclusive: float
    mean_seeds: float  # seeds the verdict rested on, on average
    simulations: int

    def monte_carlo_se(self, rate: float) -> float:
        return float(np.sqrt(max(rate * (1 - rate), 1e-4) / self.simulations))


def simulate(
    design: Design,
    true_mean: float,
    sd: float,
    claimed: float,
    tolerance: float,
    simulations: int = 4000,
    seed: int = 0,
) -> Rates:
    """How often each verdict comes out when the protocol's runs are Normal(true_mean, sd)."""
    rng = np.random.default_rng(seed)
    draws = rng.normal(true_mean, sd, size=(simulations, design.max_seeds))
    outcomes: Counter[str] = Counter()
    seeds = 0
    for values in draws:
        verdict = judge([float(v) for v in values], claimed, design, tolerance)
        outcomes[verdict.status] += 1
        seeds += verdict.seeds
    return Rates(
        reproduced=(outcomes[REPRODUCED] + outcomes[EXCEEDS]) / simulations,
        not_reproduced=outcomes[NOT_REPRODUCED] / simulations,
        inconclusive=1 - (outcomes[REPRODUCED] + outcomes[EXCEEDS] + outcomes[NOT_REPRODUCED]) / simulations,
        mean_seeds=seeds / simulations,
        simulations=simulations,
    )


def scenarios(sd: float, tolerance: float, claimed: float = 0.9) -> dict[str, float]:
    """The issue's three truths, and one more: true means relative to the claim."""
    return {
        "at claim - tolerance (must rarely be 'reproduced')": claimed - tolerance,
        "at the claim (should be 'reproduced')": claimed,
        "at claim - tolerance - 3 sd (should be 'not reproduced')": claimed - tolerance - 3 * sd,
        "at claim - tolerance + 1 sd (harder)": claimed - tolerance + sd,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sd", type=float, default=0.003, help="run-to-run sd (0.003 = 0.3 points)")
    parser.add_argument("--tolerance", type=float, default=0.005)
    parser.add_argument("--simulations", type=int, default=20000)
    parser.add_argument("--min-seeds", type=int, default=3)
    parser.add_argument("--max-seeds", type=int, default=10)
    args = parser.parse_args()
    claimed = 0.9
    designs = {
        f"seeds=auto ({args.min_seeds}..{args.max_seeds})": Design(args.min_seeds, args.max_seeds),
        "seeds=3": Design.fixed(3),
        "seeds=5": Design.fixed(5),
        f"seeds={args.max_seeds}": Design.fixed(args.max_seeds),
    }
    print(
        f"sd {100 * args.sd:.2f} points, tolerance {100 * args.tolerance:.2f} points, "
        f"{args.simulations} simulated reproductions per row (seeded)\n"
    )
    print("| design | true mean | reproduced | not reproduced | inconclusive | seeds used (mean) |")
    print("|---|---|---|---|---|---|")
    for name, design in designs.items():
        for label, true_mean in scenarios(args.sd, args.tolerance, claimed).items():
            rates = simulate(design, true_mean, args.sd, claimed, args.tolerance, args.simulations)
            print(
                f"| {name} | {label} | {100 * rates.reproduced:.1f}% | {100 * rates.not_reproduced:.1f}% "
                f"| {100 * rates.inconclusive:.1f}% | {rates.mean_seeds:.1f} |"
            )


if __name__ == "__main__":
    main()
