#!/usr/bin/env python3
"""Optuna peer of bench_coordinator_load: the same sweep bookkeeping through Optuna's own API.

Each trial is what a Trellis trial costs the coordinator: ask (sample lr, hidden_units and
activation from the same small space), 10 intermediate reports (`trial.report(value, step)`,
one per epoch) and tell. Two storages, each durable per call as the Trellis store is per
commit:

  --storage sqlite   RDBStorage on an SQLite file (one process: Optuna's docs advise against
                     SQLite for parallel work). Optuna 3.1 sets no pragma, so SQLite's defaults
                     hold: rollback journal (journal_mode=delete) and synchronous=FULL, every
                     commit fsynced; both are read back from Optuna's own connection and printed.
  --storage journal  JournalStorage(JournalFileStorage), the storage Optuna 3.1 documents for
                     several processes on one machine: every append takes its lock file, writes,
                     flushes and fsyncs (optuna/storages/_journal/file.py). Its reader takes
                     no lock, and in 3.1 a process that reads another's append half-written
                     raises JSONDecodeError (optuna/optuna#5138, fixed in 3.6): that trial is
                     abandoned unfinished, not counted, and the process goes on with the next,
                     as a worker restarted after the crash would; the count is printed.

--processes P runs P processes on one study (fork after a shared warm-up), each from a common
start for --seconds or until --trials trials in all; the rate is all their trials over the
longest one's time. A few warm-up trials come first (schema creation, SQLAlchemy's dialect).

Prints a line and, last, one JSON object:
{"storage", "processes", "trials", "seconds", "trials_per_s", "optuna", "durability",
 "torn_reads"}
or, when optuna cannot be imported, {"trials_per_s": null, "error": "..."}.
"""
import argparse
import json
import math
import multiprocessing
import os
import random
import sys
import time
import warnings

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


def make_storage(optuna, kind, directory):
    if kind == "sqlite":
        return optuna.storages.RDBStorage("sqlite:///" + os.path.join(directory, "optuna.db"))
    with warnings.catch_warnings():  # JournalStorage is experimental in 3.1
        warnings.simplefilter("ignore")
        return optuna.storages.JournalStorage(
            optuna.storages.JournalFileStorage(os.path.join(directory, "optuna.journal")))


def durability(storage, kind):
    if kind != "sqlite":
        return "JournalFileStorage: lock file, write, flush, fsync per append"
    with storage.engine.connect() as conn:
        journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return "SQLite journal_mode=%s synchronous=%s" % (journal, names.get(sync, sync))


def worker(args, index, barrier, results):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(optuna, args.storage, args.dir)
    study = optuna.load_study(study_name="load", storage=storage,
                              sampler=optuna.samplers.RandomSampler(seed=1 + index))
    rng = random.Random(1 + index)
    quota = args.trials // args.processes + (1 if index < args.trials % args.processes else 0)
    barrier.wait()
    done = torn = 0
    start = time.perf_counter()
    while done < quota and time.perf_counter() - start < args.seconds:
        try:
            run_trial(study, rng)
        except json.JSONDecodeError:
            torn += 1
            continue
        done += 1
    results.put((done, time.perf_counter() - start, torn))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True, help="directory for the storage's file")
    p.add_argument("--storage", choices=["sqlite", "journal"], default="sqlite")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--trials", type=int, default=200, help="in all processes together")
    p.add_argument("--seconds", type=float, default=60)
    args = p.parse_args()
    if args.processes < 1:
        p.error("--processes must be at least 1, not %d" % args.processes)
    try:
        import optuna
    except ImportError as e:
        print(json.dumps({"trials_per_s": None, "error": "cannot import optuna: %s" % e}))
        return 1
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.dir = os.path.abspath(args.dir)
    storage = make_storage(optuna, args.storage, args.dir)
    study = optuna.create_study(study_name="load", storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    rng = random.Random(0)
    for _ in range(WARMUP_TRIALS):
        run_trial(study, rng)
    how = durability(storage, args.storage)
    del study, storage  # each process opens its own, as separate workers would

    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(args.processes)
    results = context.Queue()
    procs = [context.Process(target=worker, args=(args, i, barrier, results))
             for i in range(args.processes)]
    for proc in procs:
        proc.start()
    try:
        outcomes = [results.get(timeout=args.seconds + 120) for _ in procs]
    except Exception:  # queue.Empty: a process died before reporting
        outcomes = []
    for proc in procs:
        proc.join()
    if len(outcomes) < len(procs) or any(proc.exitcode != 0 for proc in procs):
        print(json.dumps({"trials_per_s": None, "error": "an Optuna process failed"}))
        return 1
    done = sum(n for n, _, _ in outcomes)
    seconds = max(s for _, s, _ in outcomes)
    torn = sum(t for _, _, t in outcomes)
    rate = done / seconds if seconds > 0 else 0.0
    print("optuna %s, %s storage, %d processes: %d trials of %d reports in %.2f s = %.1f "
          "trials/s (%s; %d trials abandoned on a torn journal read)"
          % (optuna.__version__, args.storage, args.processes, done, EPOCHS, seconds, rate, how,
             torn))
    print(json.dumps({"storage": args.storage, "processes": args.processes, "trials": done,
                      "seconds": seconds, "trials_per_s": rate, "optuna": optuna.__version__,
                      "durability": how, "torn_reads": torn}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
