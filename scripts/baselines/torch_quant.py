"""PyTorch's dynamic int8 quantization of the MLP 784-128-10 on MNIST, to set
beside `cargo bench -p mass-kernels --bench compress` (same shape, same
split, pixels / 255, Adam 1e-3, batch 64, 5 epochs, one thread).

Trains the network, quantizes its Linear layers with
torch.ao.quantization.quantize_dynamic (qint8 weights, activations
quantized per batch), and prints one JSON line per variant: bytes of the
state dict as torch.save writes it, test accuracy, and latency at 1 and
1,000 rows (fastest of repeated calls, as the Rust bench times).

usage: <python with torch and numpy> scripts/baselines/torch_quant.py [EPOCHS]
(reads ../shared/datasets/mnist.csv.gz and mnist.test_rows.txt)
"""
import gzip
import io
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "..", "shared", "datasets")
EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 5

torch.set_num_threads(1)
torch.manual_seed(42)

with gzip.open(os.path.join(DATA, "mnist.csv.gz"), "rt") as f:
    raw = np.loadtxt(f, delimiter=",", skiprows=1, dtype=np.float32)
test = np.zeros(len(raw), bool)
test[np.loadtxt(os.path.join(DATA, "mnist.test_rows.txt"), dtype=int)] = True
X, y = raw[:, :784] / 255.0, raw[:, 784].astype(np.int64)
xtr, ytr = torch.from_numpy(X[~test]), torch.from_numpy(y[~test])
xte, yte = torch.from_numpy(X[test]), torch.from_numpy(y[test])

model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = torch.nn.CrossEntropyLoss()
for _ in range(EPOCHS):
    order = torch.randperm(len(xtr))
    for start in range(0, len(xtr), 64):
        batch = order[start:start + 64]
        optimizer.zero_grad()
        loss_fn(model(xtr[batch]), ytr[batch]).backward()
        optimizer.step()
model.eval()
quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def fastest(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


for name, net in [("f32", model), ("int8 (dynamic)", quantized)]:
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    with torch.inference_mode():
        accuracy = float((net(xte).argmax(1) == yte).float().mean())
        one = xte[:1]
        thousand = xte[:1000]
        for _ in range(50):
            net(one)
        row_us = fastest(lambda: net(one), 2000) * 1e6
        batch_ms = fastest(lambda: net(thousand), 21) * 1e3
    print(json.dumps({"variant": name, "bytes": buffer.getbuffer().nbytes, "accuracy": round(accuracy, 4),
                      "one_row_us": round(row_us, 1), "thousand_rows_ms": round(batch_ms, 3),
                      "torch": torch.__version__, "threads": torch.get_num_threads(), "epochs": EPOCHS}))
