"""The same network and training step in PyTorch, to measure TF's training throughput side by side.

    pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl   # or any CPU torch
    python -m benchmarks.pytorch_reference [--width default] [--steps 10] [--repeats 3]

An optional extra, never a dependency of cifar-xai: `benchmarks.training_speed --pytorch` runs it
in its own process (so the two frameworks' thread pools never share the cores) and prints the
ratio. The network mirrors `cifar_xai.models.interpretable_cnn`: padded 2x2 whitening stem,
conv -> max-pool -> BatchNorm -> ReLU blocks, Global Average Pooling, Linear / 9. The step is
airbench's: bfloat16 autocast, channels-last, Nesterov SGD, label-smoothed cross-entropy.
Prints one JSON line: img/s, GFLOP/s and the bfloat16 matmul peak measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

WIDTHS = {"small": (32, 64, 128), "default": (64, 256, 256)}


def build(widths, torch):
    nn = torch.nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(cout, momentum=0.6),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, momentum=0.6), nn.ReLU()]

    layers = [nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 24, 2), nn.ReLU()]  # TF's "same" for a 2x2 kernel
    cin = 24
    for width in widths:
        layers += block(cin, width)
        cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    return nn.Sequential(*layers)


def forward_flops(model, torch) -> float:
    """2 x multiply-adds of the convs and the linear layer for one 32x32 image."""
    flops = 0.0
    x = torch.zeros(1, 3, 32, 32)
    for layer in model:
        x = layer(x)
        if isinstance(layer, torch.nn.Conv2d):
            flops += 2 * x.shape[2] * x.shape[3] * layer.weight.numel()
        elif isinstance(layer, torch.nn.Linear):
            flops += 2 * layer.weight.numel()
    return flops


def matmul_peak(torch, n: int = 4096, repeats: int = 5) -> float:
    a = torch.randn(n, n).to(torch.bfloat16)
    a @ a
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", default="default", choices=sorted(WIDTHS))
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("error: PyTorch is not installed; pip install a CPU build of torch to run the reference",
              file=sys.stderr)
        return 2

    torch.manual_seed(0)
    model = build(WIDTHS[args.width], torch).to(memory_format=torch.channels_last)
    flops = forward_flops(model, torch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.85, nesterov=True, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.2)
    images = torch.rand(args.batch_size, 3, 32, 32).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (args.batch_size,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_fn(model(images) / 9, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up: oneDNN primitive creation
        step()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        times.append((time.perf_counter() - start) / args.steps)
    throughput = args.batch_size / statistics.median(times)
    peak = matmul_peak(torch)
    gflops = 3 * flops * throughput / 1e9  # backward ~ 2x forward
    print(json.dumps({"framework": f"pytorch {torch.__version__}", "width": args.width,
                      "threads": torch.get_num_threads(), "img_per_s": round(throughput, 1),
                      "gflop_per_image": round(flops / 1e9, 4), "gflop_per_s": round(gflops, 1),
                      "bf16_matmul_peak": round(peak, 1), "of_peak": round(gflops / peak, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
