#!/usr/bin/python3
"""The Optuna peer of bench_hpo_quality: Optuna's TPESampler configured as our TPE is (the C++
side passes its settings: multivariate, start-up trials, EI candidates, prior weight; Optuna's
default gamma and weights, which ours copies) on the functions of bench/hpo_functions.h (the
same formulas and boxes, kept in step by hand), one sequential study per function and seed.

Prints one JSON object: {function: [best value of each seed's study, in seed order], "optuna":
"<version>", "config": {the sampler's settings as Optuna holds them}}, or {"error": "..."} when
optuna cannot be imported.
"""
import argparse
import json
import math
import warnings


def branin(x):
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x[1] - b * x[0] ** 2 + c * x[0] - 6) ** 2 + 10 * (1 - t) * math.cos(x[0]) + 10


ALPHA = [1.0, 1.2, 3.0, 3.2]
A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
     [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
     [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
     [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
     [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]


def hartmann6(x):
    return -sum(ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6)))
                for i in range(4))


def rosenbrock(x):
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


FUNCTIONS = {
    "branin": (branin, [(-5, 10), (0, 15)]),
    "hartmann6": (hartmann6, [(0, 1)] * 6),
    "rosenbrock4": (rosenbrock, [(-5, 10)] * 4),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--n-startup-trials", type=int, required=True)
    parser.add_argument("--n-ei-candidates", type=int, required=True)
    parser.add_argument("--prior-weight", type=float, required=True)
    args = parser.parse_args()
    try:
        import optuna
    except ImportError as e:
        print(json.dumps({"error": f"cannot import optuna: {e}"}))
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # multivariate=True warns that it is experimental, once per sampler.
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    def sampler(seed):
        # consider_endpoints and consider_magic_clip as documented for 3.1 (False, True): ours
        # leaves the ends out and keeps the magic clip too. gamma and weights: Optuna's
        # default_gamma / default_weights, which ours reimplements.
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, n_startup_trials=args.n_startup_trials,
            n_ei_candidates=args.n_ei_candidates, prior_weight=args.prior_weight,
            consider_prior=True, consider_endpoints=False, consider_magic_clip=True,
            gamma=optuna.samplers._tpe.sampler.default_gamma,
            weights=optuna.samplers._tpe.sampler.default_weights)

    probe = sampler(0)
    pe = probe._parzen_estimator_parameters
    config = {"multivariate": probe._multivariate, "n_startup_trials": probe._n_startup_trials,
              "n_ei_candidates": probe._n_ei_candidates, "prior_weight": pe.prior_weight,
              "consider_prior": pe.consider_prior, "consider_endpoints": pe.consider_endpoints,
              "consider_magic_clip": pe.consider_magic_clip, "gamma": probe._gamma.__name__,
              "weights": pe.weights.__name__}
    results = {"optuna": optuna.__version__, "config": config}
    for name, (f, bounds) in FUNCTIONS.items():
        bests = []
        for seed in range(args.seeds):
            study = optuna.create_study(sampler=sampler(seed))
            study.optimize(
                lambda t: f([t.suggest_float(f"x{d}", lo, hi)
                             for d, (lo, hi) in enumerate(bounds)]),
                n_trials=args.trials)
            bests.append(study.best_value)
        results[name] = bests
    print(json.dumps(results))


if __name__ == "__main__":
    main()
