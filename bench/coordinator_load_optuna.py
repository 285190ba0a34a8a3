#!/usr/bin/env python3
"""Optuna peer of bench_coordinator_load: the same sweep bookkeeping through Optuna's own API.

Each trial is what a Trellis trial costs the coordinator: ask (sample lr, hidden_units and
activation from the same small space), 10 intermediate reports (`trial.report(value, step)`,
one per epoch) and tell, all against Optuna's RDB storage on an SQLite file in --dir, so
every report is durable as in the Trellis store. Runs --trials trials or until --seconds have
passed, whichever comes first, after a few warm-up trials (the first ones pay for creating the
schema and importing SQLAlchemy's dialect).

Prints a line and, last, one JSON object:
{"trials": N, "seconds": S, "trials_per_s": R, "optuna": "<version>"}
or, when optuna cannot be imported, {"trials_per_s": null, "error": "..."}.
"""
import argparse
import json
import math
import os
import random
import sys
import time

EPOCHS = 10
WARMUP_TRIALS = 5


def run_trial(study, rng):
    trial = study.ask()
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    hidden = trial.suggest_int("hidden_units", 32, 512)
    trial.suggest_categorical("activation", ["relu", "tanh"])
    quality = 0.6 + 0.3 * rng.random() - 0.05 * abs(math.log10(lr) + 2.5) + hidden / 1e5
    val_acc = 0.0
    for epoch in range(1, EPOCHS + 1):
        val_acc = quality * (1 - math.exp(-epoch / 3)) + 0.01 * rng.random()
        trial.report(val_acc, epoch)
    study.tell(trial, val_acc)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True, help="directory for the SQLite file")
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60)
    args = p.parse_args()
    try:
        import optuna
    except ImportError as e:
        print(json.dumps({"trials_per_s": None, "error": "cannot import optuna: %s" % e}))
        return 1
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = "sqlite:///" + os.path.join(os.path.abspath(args.dir), "optuna.db")
    study = optuna.create_study(study_name="load", storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    rng = random.Random(1)
    for _ in range(WARMUP_TRIALS):
        run_trial(study, rng)
    done = 0
    start = time.perf_counter()
    while done < args.trials and time.perf_counter() - start < args.seconds:
        run_trial(study, rng)
        done += 1
    seconds = time.perf_counter() - start
    rate = done / seconds if seconds > 0 else 0.0
    print("optuna %s, SQLite storage: %d trials of %d reports in %.2f s = %.1f trials/s"
          % (optuna.__version__, done, EPOCHS, seconds, rate))
    print(json.dumps({"trials": done, "seconds": seconds, "trials_per_s": rate,
                      "optuna": optuna.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
