#!/usr/bin/env python3
"""PyTorch peer of bench_train_throughput: the same MLP, batch, optimizer and data, one thread.

bench_train_throughput starts it (pinned to the same core, which the child inherits) and divides
its own samples/s by ours. Reads the Fashion-MNIST IDX .gz files with gzip + numpy, so nothing
is fetched. Prints a few lines and, last, one JSON object:
{"samples_per_s": ..., "epochs": ..., "torch": "<version>"}
or, when torch cannot be imported, {"samples_per_s": null, "error": "..."}.
"""
import argparse
import gzip
import json
import os
import sys
import time


def read_idx(path):
    import numpy as np
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find(directory, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(os.path.join(directory, name) + "[.gz]")


def probe_blas(torch, widths, batch):
    """GFLOP/s of the products nn.Linear runs at these widths (what OPENBLAS_CORETYPE changes)."""
    mats = []
    for i in range(len(widths) - 1):
        x = torch.rand(batch, widths[i])
        w = torch.rand(widths[i + 1], widths[i])
        d = torch.rand(batch, widths[i + 1])
        mats.append((x, w, d))
    def once():
        for x, w, d in mats:
            x @ w.t()      # forward
            d.t() @ x      # dW
            d @ w          # dX
    flop = sum(2.0 * 3 * x.shape[0] * x.shape[1] * w.shape[0] for x, w, _ in mats)
    once()
    best = 1e30
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(20):
            once()
        best = min(best, (time.perf_counter() - t) / 20)
    print(json.dumps({"gflops": flop / best * 1e-9,
                      "coretype": os.environ.get("OPENBLAS_CORETYPE", "")}))
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--hidden", default="256,128", help="hidden layer widths, comma-separated")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs, after a warm-up")
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--probe-blas", action="store_true",
                   help="only time the model's Linear products (forward, dW, dX) and print GFLOP/s")
    a = p.parse_args()
    try:
        import numpy as np
        import torch
    except ImportError as e:  # the caller reports null rather than failing the whole bench
        print(json.dumps({"samples_per_s": None, "error": "cannot import: %s" % e}))
        return 0

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    if a.probe_blas:
        return probe_blas(torch, [784] + [int(w) for w in a.hidden.split(",") if w] + [10], a.batch)
    images = read_idx(find(a.data, "train-images-idx3-ubyte"))
    labels = read_idx(find(a.data, "train-labels-idx1-ubyte"))
    # Samples as rows here (PyTorch's layout); ours are columns. Same arithmetic either way.
    x_all = torch.from_numpy(images.reshape(images.shape[0], -1).astype(np.float32) / 255.0)
    y_all = torch.from_numpy(labels.astype(np.int64))

    widths = [x_all.shape[1]] + [int(w) for w in a.hidden.split(",") if w] + [10]
    layers = []
    for i in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i + 2 < len(widths):
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    rows = x_all.shape[0]
    steps = rows // a.batch

    def step(idx):
        xb, yb = x_all[idx], y_all[idx]  # gather, as our trainer gathers columns
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    perm = torch.randperm(rows)
    for s in range(a.warmup_steps):
        step(perm[(s % steps) * a.batch:(s % steps + 1) * a.batch])

    samples = 0
    start = time.perf_counter()
    for _ in range(a.epochs):
        perm = torch.randperm(rows)
        for s in range(steps):
            loss = step(perm[s * a.batch:(s + 1) * a.batch])
            samples += a.batch
    elapsed = time.perf_counter() - start
    rate = samples / elapsed
    print("pytorch %s: %s, batch %d, %d epochs, %.0f samples/s, final loss %.4f"
          % (torch.__version__, "-".join(map(str, widths)), a.batch, a.epochs, rate, loss.item()))
    print(json.dumps({"samples_per_s": rate, "epochs": a.epochs, "torch": torch.__version__,
                      "threads": torch.get_num_threads(),
                      "coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
                      "flush_denormal": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
