#!/usr/bin/python3
"""Our fANOVA against Optuna's FanovaImportanceEvaluator (Debian python3-optuna) on the same
trials: on the sweep of six parameters that each matter by their own amount, the Spearman
correlation of the two rankings must be at least 0.8 for every seed; on the sweep where two of six
parameters matter, both must put those two first (the other four are noise to both).

usage: importance_vs_optuna.py --trials-tool BUILD/tests/dashboard/importance_trials
"""

import argparse
import json
import subprocess
import sys

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.importance import FanovaImportanceEvaluator, get_param_importances

optuna.logging.set_verbosity(optuna.logging.WARNING)


def spearman(a, b):
    """Spearman's rho of two {name: score} maps over the same names (no ties expected)."""
    names = sorted(a)
    rank = lambda m: {n: r for r, n in enumerate(sorted(names, key=lambda n: -m[n]))}
    ra, rb = rank(a), rank(b)
    n = len(names)
    return 1 - 6 * sum((ra[x] - rb[x]) ** 2 for x in names) / (n * (n * n - 1))


def optuna_importances(sweep, seed):
    distributions = {}
    for p in sweep["space"]:
        if p["kind"] == "categorical":
            distributions[p["name"]] = CategoricalDistribution(p["choices"])
        else:
            distributions[p["name"]] = FloatDistribution(p["low"], p["high"],
                                                         log=p["kind"] == "log_float")
    study = optuna.create_study()
    for t in sweep["trials"]:
        study.add_trial(optuna.trial.create_trial(params=t["params"], distributions=distributions,
                                                  value=t["value"]))
    return get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials-tool", required=True)
    args = parser.parse_args()
    failed = False
    for kind in ("graded", "two-of-six"):
        for seed in (1, 2, 3):
            out = subprocess.run([args.trials_tool, kind, "300", str(seed)], check=True,
                                 capture_output=True, text=True).stdout
            sweep = json.loads(out)
            ours, theirs = sweep["ours"], optuna_importances(sweep, seed)
            rho = spearman(ours, theirs)
            show = lambda m: " ".join("%s=%.3f" % (n, m[n]) for n in sorted(m, key=lambda n: -m[n]))
            print("%s seed %d: Spearman %.3f\n  ours:   %s\n  optuna: %s" % (kind, seed, rho, show(ours), show(theirs)))
            # Among the four parameters that do not matter the order is noise on both sides, so
            # the correlation is required where every parameter matters by its own amount.
            if kind == "graded" and rho < 0.8:
                print("FAIL: Spearman %.3f < 0.8" % rho)
                failed = True
            if kind == "two-of-six":
                for who, m in (("ours", ours), ("optuna", theirs)):
                    top = set(sorted(m, key=lambda n: -m[n])[:2])
                    if top != {"x1", "x2"}:
                        print("FAIL: %s ranks %s first, not x1 and x2" % (who, sorted(top)))
                        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
