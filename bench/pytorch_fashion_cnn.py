#!/usr/bin/python3
"""The PyTorch twin of examples/fashion_cnn.toml, for the throughput comparison in bench/train_throughput.py.

Same data (Debian's Fashion-MNIST IDX files), same per-channel standardisation, same network, optimizer, batch
size, thread count and number of steps. Prints one JSON line with the training-loop timings. Run with Debian's
/usr/bin/python3 (python3-torch 1.13, the same LibTorch traindx links).
"""
import argparse
import gzip
import json
import time

import numpy as np
import torch
from torch import nn


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)

    x = torch.from_numpy(read_idx(f"{args.data}/train-images-idx3-ubyte.gz").copy()).float().unsqueeze(1)
    y = torch.from_numpy(read_idx(f"{args.data}/train-labels-idx1-ubyte.gz").copy()).long()
    x = (x - x.mean()) / x.std()

    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.002)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    data_s = compute_s = 0.0
    perm = torch.randperm(x.shape[0])
    start = time.perf_counter()
    for step in range(args.steps):
        t0 = time.perf_counter()
        i = (step * args.batch_size) % (x.shape[0] - args.batch_size)
        idx = perm[i:i + args.batch_size]
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        loss.item()
        t2 = time.perf_counter()
        data_s += t1 - t0
        compute_s += t2 - t1
    wall = time.perf_counter() - start
    print(json.dumps({"steps": args.steps, "batch_size": args.batch_size, "threads": args.threads,
                      "wall_seconds": wall, "data_seconds": data_s, "compute_seconds": compute_s,
                      "samples_per_second": args.steps * args.batch_size / (data_s + compute_s)}))


if __name__ == "__main__":
    main()
