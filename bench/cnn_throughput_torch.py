#!/usr/bin/env python3
"""PyTorch peer of bench_cnn_throughput: the same CNN, batch, Adam and data, one thread.

Model: Conv2d(1,32,3,pad 1) ReLU MaxPool2d(2) Conv2d(32,64,3,pad 1) ReLU MaxPool2d(2) Flatten
Linear(3136,128) ReLU Linear(128,10), cross-entropy, Adam lr 1e-3, batch 128 - the layers of
examples/fashion-cnn.yaml. Debian's torch runs these convolutions on oneDNN. Pinned by the
caller (the child inherits its core); set_num_threads(1) and set_flush_denormal(True).
Warm-up steps, then --steps timed steps. Last line: {"samples_per_s": ..., "torch": ...}.
"""
import argparse
import json
import sys
import time

# The same IDX reading as the MLP peer (this folder is on sys.path when run as a script).
from train_throughput_torch import find, read_idx


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup-steps", type=int, default=10)
    a = p.parse_args()
    try:
        import numpy as np
        import torch
    except ImportError as e:
        print(json.dumps({"samples_per_s": None, "error": "cannot import: %s" % e}))
        return 0
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    images = read_idx(find(a.data, "train-images-idx3-ubyte"))
    labels = read_idx(find(a.data, "train-labels-idx1-ubyte"))
    x_all = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)  # N x 1 x 28 x 28
    y_all = torch.from_numpy(labels.astype(np.int64))
    side = x_all.shape[2] // 4
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64 * side * side, 128), nn.ReLU(),
                          nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    rows = x_all.shape[0]
    steps = rows // a.batch
    perm = torch.randperm(rows)

    def step(s):
        idx = perm[(s % steps) * a.batch:(s % steps + 1) * a.batch]
        xb, yb = x_all[idx], y_all[idx]
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    for s in range(a.warmup_steps):
        step(s)
    start = time.perf_counter()
    for s in range(a.steps):
        loss = step(a.warmup_steps + s)
    elapsed = time.perf_counter() - start
    rate = a.steps * a.batch / elapsed
    print("pytorch %s: %d steps, %.0f samples/s, loss %.4f"
          % (torch.__version__, a.steps, rate, loss.item()))
    print(json.dumps({"samples_per_s": rate, "torch": torch.__version__,
                      "threads": torch.get_num_threads(),
                      "mkldnn": bool(torch.backends.mkldnn.is_available())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
