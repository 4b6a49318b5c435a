"""Training-step time of each backbone with contiguous vs channels-last weights and views, on the
same batch in one process: the figures behind ``train.channels_last: true`` being the default.

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python bench/channels_last.py          # one CPU thread
    .venv/bin/python bench/channels_last.py --device cuda

One SimCLR step (forward of two views, backward, SGD) per timing; the median of ``--steps`` steps
after ``--warmup`` untimed ones, the two formats interleaved step by step so that a machine busy
with other work slows both alike. Prints seconds per step and the ratio (contiguous / channels-last:
above 1, channels-last is faster).
"""

import argparse
import statistics
import time

import torch

from cl_core import VIDEO_BACKBONES, build_backbone, build_method, memory_format

# (backbone, input channels, one view's batch shape): the Fashion-MNIST configs' tiny CNN, a
# 3-channel 32 px tiny CNN, the ResNet-18 of the CIFAR-sized configs, the video smoke backbone.
CASES = (
    ("tiny_cnn", 1, (256, 1, 28, 28)),
    ("tiny_cnn", 3, (128, 3, 32, 32)),
    ("resnet18", 3, (64, 3, 32, 32)),
    ("tiny_cnn3d", 3, (16, 3, 8, 32, 32)),
)


def step_timer(name: str, channels: int, shape: tuple[int, ...], channels_last: bool, device: str):
    """A function that runs one training step and returns its seconds."""
    torch.manual_seed(0)
    method = build_method("simclr", build_backbone(name, channels, True), hidden_dim=512, projection_dim=128)
    fmt = memory_format(name in VIDEO_BACKBONES, channels_last)
    method = method.to(device, memory_format=fmt)
    views = [torch.randn(shape, device=device).contiguous(memory_format=fmt) for _ in range(2)]
    optimizer = torch.optim.SGD(method.parameters(), lr=0.01)

    def step() -> float:
        if device != "cpu":
            torch.cuda.synchronize()
        started = time.perf_counter()
        loss = method(views, None).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, median of {args.steps} steps")
    print("| backbone | batch | contiguous s/step | channels-last s/step | ratio |")
    print("|---|---|--:|--:|--:|")
    for name, channels, shape in CASES:
        steps = [step_timer(name, channels, shape, last, args.device) for last in (False, True)]
        times: tuple[list[float], list[float]] = ([], [])
        for i in range(args.warmup + args.steps):
            for step, seen in zip(steps, times):
                seconds = step()
                if i >= args.warmup:
                    seen.append(seconds)
        plain, last = (statistics.median(t) for t in times)
        print(f"| {name} | {tuple(shape)} | {plain:.3f} | {last:.3f} | {plain / last:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
