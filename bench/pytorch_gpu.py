#!/usr/bin/env python3
"""PyTorch GPU peer for scripts/gpu-check.sh: the same convolutions and the
same ResNet-50 v1.5 training step as stepscope, on the same GPU.

  conv  For each shape in a JSON file (as bench/pytorch_conv.py takes them)
        and each pass: fwd (F.conv2d), bwd-data and bwd-filter
        (aten.convolution_backward with one output mask), timed with CUDA
        events after warm-up: --repeat (20) calls queued back to back, each
        between its own two events, as stepscope times a conv row;
        torch.backends.cudnn.benchmark on (PyTorch's own autotune), --dtype
        fp32 (TF32 off), tf32 (TF32 on) or bf16.
  step  ResNet-50 v1.5 (stride on the 3x3, 25,557,032 parameters; written by
        hand: torchvision may be absent), softmax cross-entropy, SGD (lr 0.1,
        momentum 0.9, weight decay 1e-4), one iteration timed with CUDA events
        per phase: forward (incl. loss), backward, optimizer. --channels-last
        (NHWC memory format, what cuDNN prefers), cudnn.benchmark on; bf16
        through torch.autocast.

Usage:
  python3 bench/pytorch_gpu.py conv --shapes shapes.json [--dtype fp32] [--repeat 20] [--warmup 3]
  python3 bench/pytorch_gpu.py step [--batch 32] [--dtype fp32] [--channels-last] [--iterations 10] [--warmup 3]
One JSON object on stdout; progress on stderr; bad arguments exit 2; no GPU exits 1.
--device cpu runs the same code on the CPU, timed with the host clock: a
rehearsal of the script where there is no GPU (the tests run it), not a peer.
"""

import argparse
import json
import statistics
import sys
import time

PASSES = ("fwd", "bwd-data", "bwd-filter")
DTYPES = ("fp32", "tf32", "bf16")
EXPANSION = 4
LAYERS = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))


def fail(msg, code=2):
    print(f"pytorch_gpu.py: error: {msg}", file=sys.stderr)
    sys.exit(code)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def setup(args):
    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("no CUDA device visible to PyTorch", 1)
    torch.backends.cudnn.benchmark = True
    tf32 = args.dtype == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return torch


class HostMark:
    """A CUDA event's interface on the host clock (--device cpu): CPU ops are synchronous."""

    def record(self):
        self.t = time.perf_counter()

    def query(self):
        return True

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return (end.t - self.t) * 1000.0


def mark(torch, device):
    return torch.cuda.Event(enable_timing=True) if device == "cuda" else HostMark()


# GPU cycles the stream spins before the timed calls (~10 ms on an H200): the host queues them all meanwhile.
QUEUE_SLEEP_CYCLES = 20_000_000


def time_op(torch, device, fn, warmup, repeat):
    """`repeat` calls queued back to back behind a spin of the stream (torch.cuda._sleep), each between its
    own two events, so each sample is one call's GPU time, never PyTorch's host dispatch (tens of us on small
    layers). This is how stepscope times a conv row (src/bench/conv-bench-cuda.ts: one event pair per call,
    the calls queued behind a hold of the stream), so the two sides count the same thing."""
    for _ in range(warmup):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    spin = device == "cuda" and hasattr(torch.cuda, "_sleep")
    if device == "cuda" and not spin:
        log("  torch.cuda._sleep is missing: the calls are not queued ahead, their times may include host dispatch")
    for cycles in (QUEUE_SLEEP_CYCLES, 10 * QUEUE_SLEEP_CYCLES):
        starts = [mark(torch, device) for _ in range(repeat)]
        ends = [mark(torch, device) for _ in range(repeat)]
        slept = mark(torch, device)
        if spin:
            torch.cuda._sleep(cycles)
        slept.record()
        for start, end in zip(starts, ends):
            start.record()
            fn()
            end.record()
        # Queued ahead only if the spin was still running when the last call was queued (as stepscope's check).
        queued = spin and not slept.query()
        ends[-1].synchronize()
        if queued or not spin:
            break
    times = [start.elapsed_time(end) for start, end in zip(starts, ends)]
    return {"medianMs": statistics.median(times), "minMs": min(times), "maxMs": max(times), "queued": bool(queued)}


def environment(torch, device):
    cuda = device == "cuda"
    return {"torch": torch.__version__, "device": device, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
            "gpu": torch.cuda.get_device_name(0) if cuda else None}


def run_conv(args):
    torch = setup(args)
    dev = args.device
    try:
        with open(args.shapes, encoding="utf-8") as f:
            shapes = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        fail(f"--shapes {args.shapes!r}: {e}")
    dt = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    gen = torch.Generator(device=dev).manual_seed(1234)
    rows = []
    with torch.no_grad():
        for sh in shapes:
            n, c, h, w, k, r, s, stride, pad = (sh[f] for f in ("n", "c", "h", "w", "k", "r", "s", "stride", "pad"))
            x = torch.randn(n, c, h, w, device=dev, dtype=dt, generator=gen).to(memory_format=fmt)
            wt = torch.randn(k, c, r, s, device=dev, dtype=dt, generator=gen).to(memory_format=fmt)
            y = torch.nn.functional.conv2d(x, wt, None, stride, pad)
            dy = torch.randn_like(y)
            for p in PASSES:
                if p == "fwd":
                    fn = lambda: torch.nn.functional.conv2d(x, wt, None, stride, pad)  # noqa: E731
                else:
                    mask = [True, False, False] if p == "bwd-data" else [False, True, False]
                    fn = lambda mask=mask: torch.ops.aten.convolution_backward(  # noqa: E731
                        dy, x, wt, None, [stride, stride], [pad, pad], [1, 1], False, [0, 0], 1, mask)
                row = {"key": sh["key"], "pass": p, "batch": n, "calls": args.repeat, **time_op(torch, dev, fn, args.warmup, args.repeat)}
                rows.append(row)
                log(f"  {sh['key']:<16} {p:<10} {row['medianMs']:.3f} ms")
    return {"peer": "pytorch", "mode": "conv", "dtype": args.dtype, "channelsLast": args.channels_last,
            **environment(torch, dev), "rows": rows}


def resnet50(torch, num_classes):
    nn = torch.nn

    class Bottleneck(nn.Module):
        def __init__(self, inplanes, width, stride, downsample):
            super().__init__()
            out = width * EXPANSION
            self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, out, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            return self.relu(self.bn3(self.conv3(y)) + identity)

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            inplanes, stages = 64, []
            for width, blocks, stride in LAYERS:
                out = width * EXPANSION
                down = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
                stages.append(nn.Sequential(Bottleneck(inplanes, width, stride, down),
                                            *[Bottleneck(out, width, 1, None) for _ in range(blocks - 1)]))
                inplanes = out
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(inplanes, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet50()


def run_step(args):
    torch = setup(args)
    dev = args.device
    torch.manual_seed(1)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = resnet50(torch, args.classes).to(dev).to(memory_format=fmt).train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.rand(args.batch, 3, args.resolution, args.resolution, device=dev).to(memory_format=fmt)
    labels = torch.randint(0, args.classes, (args.batch,), device=dev)
    loss_fn = torch.nn.CrossEntropyLoss()
    phases = {"forwardMs": [], "backwardMs": [], "optimizerMs": [], "totalMs": []}
    for i in range(args.warmup + args.iterations):
        ev = [mark(torch, dev) for _ in range(4)]
        ev[0].record()
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            loss = loss_fn(model(x), labels)
        ev[1].record()
        loss.backward()
        ev[2].record()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ev[3].record()
        ev[3].synchronize()
        if i >= args.warmup:
            phases["forwardMs"].append(ev[0].elapsed_time(ev[1]))
            phases["backwardMs"].append(ev[1].elapsed_time(ev[2]))
            phases["optimizerMs"].append(ev[2].elapsed_time(ev[3]))
            phases["totalMs"].append(ev[0].elapsed_time(ev[3]))
    # The total's median as stepscope takes it: the lower middle of an even count (src/run/training.ts).
    summary = {k: (statistics.median_low if k == "totalMs" else statistics.median)(v) for k, v in phases.items()}
    log(f"pytorch step: batch {args.batch}, {args.dtype}, channels-last {args.channels_last}: "
        f"{summary['totalMs']:.2f} ms (fwd {summary['forwardMs']:.2f}, bwd {summary['backwardMs']:.2f}, "
        f"opt {summary['optimizerMs']:.2f}), loss {loss.item():.4f}")
    return {"peer": "pytorch", "mode": "step", "dtype": args.dtype, "channelsLast": args.channels_last,
            "batch": args.batch, "resolution": args.resolution, "parameters": params, **environment(torch, dev),
            "median": summary, "iterations": phases, "loss": loss.item(),
            "peakMemoryBytes": torch.cuda.max_memory_allocated() if dev == "cuda" else None}


def positive(name, lo=1):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} {text!r}: allowed an integer >= {lo}")
        if v < lo:
            raise argparse.ArgumentTypeError(f"{name} {v}: allowed an integer >= {lo}")
        return v
    return parse


def main():
    ap = argparse.ArgumentParser(description="PyTorch GPU peer: conv per layer and pass, or the ResNet-50 step")
    sub = ap.add_subparsers(dest="mode", required=True)
    conv = sub.add_parser("conv")
    conv.add_argument("--shapes", required=True)
    step = sub.add_parser("step")
    step.add_argument("--batch", type=positive("--batch"), default=32)
    step.add_argument("--resolution", type=positive("--resolution", 32), default=224)
    step.add_argument("--classes", type=positive("--classes", 2), default=1000)
    step.add_argument("--iterations", type=positive("--iterations"), default=10)
    for p in (conv, step):
        p.add_argument("--dtype", choices=DTYPES, default="fp32")
        p.add_argument("--channels-last", action="store_true")
        p.add_argument("--warmup", type=positive("--warmup", 0), default=3)
        p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    conv.add_argument("--repeat", type=positive("--repeat"), default=20, help="calls timed, each on its own (their median)")
    args = ap.parse_args()
    print(json.dumps(run_conv(args) if args.mode == "conv" else run_step(args)))


if __name__ == "__main__":
    main()
