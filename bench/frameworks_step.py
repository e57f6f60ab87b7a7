#!/usr/bin/env python3
"""Peer benchmark: one full ResNet-50 v1.5 training step on the CPU, fp32,
in PyTorch and/or TensorFlow.

The model is ResNet-50 v1.5 as torchvision builds it (stride on the 3x3 conv of
each bottleneck; 25,557,032 trainable parameters at 1000 classes), written by
hand for both frameworks (there is no torchvision here, and Keras' built-in
ResNet50 is v1, with the stride on the first 1x1 conv).

One iteration = forward + softmax cross-entropy loss + backward + SGD step
(lr 0.1, momentum 0.9, weight decay 1e-4); for PyTorch also zero_grad.
Input is synthetic: uniform [0, 1) fp32 images, fixed per run (seeded), and
random integer labels in [0, 1000).

  PyTorch     NCHW (channels-first), eager, model.train(),
              torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=1e-4).
              Per-phase split timed with perf_counter around each part:
              forward (incl. loss), backward, optimizer (step + zero_grad).
  TensorFlow  NHWC (the framework default), tf.keras layers, one
              tf.function(jit_compile=False) train step with GradientTape,
              keras SGD(lr=0.1, momentum=0.9). Weight decay is added as
              coupled L2 exactly as torch.optim.SGD does it: grad += 1e-4 * w
              for every trainable variable before apply_gradients (so it
              goes through the momentum buffer, as in PyTorch). Keras 3's
              SGD(weight_decay=...) would instead be decoupled (applied to the
              weights outside momentum), so it is not used. Only the whole
              step is timed (it is one graph call); phases are null.

Each framework runs in its own child process of this script (subprocess +
sys.executable) so that the two never share a process; each child prints one
JSON line that the parent collects. Memory: ru_maxrss (getrusage, KiB on
Linux) at the end of the child is the absolute peak RSS; growth is that minus
VmRSS (/proc/self/status) read right after model + optimizer + data creation.

Usage:
  python3 bench/frameworks_step.py --framework pytorch|tensorflow|both \
      --batch 8 --iterations 5 --warmup 2 --threads 2 --resolution 224 [--json]

Output (stdout): one human-readable line per framework; with --json, stdout is
instead a single JSON object
  {"machine": {...}, "batch": B, "resolution": R,
   "results": {"pytorch": {...}, "tensorflow": {...}}}
each result holding version, threads, paramCount, iterations [ms...],
medianMs, minMs, maxMs, phases (or null), peakRssMiB, rssGrowthMiB, notes
(and the human-readable lines go to stderr). A framework that cannot run has
{"error": "..."} as its result and the script exits 1. Progress goes to
stderr. Bad arguments exit 2 with a message naming the value and what is
allowed.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

FRAMEWORKS = ("pytorch", "tensorflow")
NUM_CLASSES = 1000
EXPECTED_PARAMS = 25_557_032
LR = 0.1
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
SEED = 1234
LAYERS = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride)
EXPANSION = 4
PROG = "frameworks_step.py"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def fail(msg, code=2):
    print(f"{PROG}: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def int_in_range(name, lo, hi):
    def parse(text):
        try:
            value = int(text, 10)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not an integer; allowed: an integer from {lo} to {hi}")
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(
                f"{value} is out of range; allowed: an integer from {lo} to {hi}")
        return value
    return parse


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        fail(message, 2)


def parse_args(argv):
    p = Parser(prog=PROG, description="ResNet-50 v1.5 training-step peer benchmark (CPU, fp32).")
    p.add_argument("--framework", default="both", choices=FRAMEWORKS + ("both",),
                   help="which framework(s) to time (default both)")
    p.add_argument("--batch", type=int_in_range("--batch", 1, 4096), default=8)
    p.add_argument("--iterations", type=int_in_range("--iterations", 1, 100000), default=5,
                   help="timed iterations (default 5)")
    p.add_argument("--warmup", type=int_in_range("--warmup", 0, 100000), default=2,
                   help="untimed iterations first (default 2)")
    p.add_argument("--threads", type=int_in_range("--threads", 1, 1024), default=2,
                   help="intra-op threads (default 2)")
    p.add_argument("--resolution", type=int_in_range("--resolution", 32, 2048), default=224,
                   help="square input size (default 224)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------- helpers --

def vm_rss_kib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def summary(values):
    return {"medianMs": statistics.median(values), "minMs": min(values), "maxMs": max(values)}


def memory_fields(rss_after_setup_kib):
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "peakRssMiB": round(peak_kib / 1024, 1),
        "rssGrowthMiB": (round((peak_kib - rss_after_setup_kib) / 1024, 1)
                         if rss_after_setup_kib is not None else None),
        "rssAfterSetupMiB": (round(rss_after_setup_kib / 1024, 1)
                             if rss_after_setup_kib is not None else None),
    }


def machine_info():
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpuModel": cpu or platform.processor() or None,
        "logicalCpus": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------- PyTorch --

def run_pytorch(args):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
        interop_note = "inter-op threads 1"
    except RuntimeError as e:  # only settable before any parallel work
        interop_note = f"inter-op threads left at {torch.get_num_interop_threads()} ({e})"
    torch.manual_seed(SEED)

    class Bottleneck(nn.Module):
        def __init__(self, inplanes, width, stride, downsample):
            super().__init__()
            out = width * EXPANSION
            self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)  # v1.5
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, out, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return self.relu(y + identity)

    class ResNet50(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            inplanes = 64
            stages = []
            for width, blocks, stride in LAYERS:
                out = width * EXPANSION
                down = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False),
                                     nn.BatchNorm2d(out))
                blks = [Bottleneck(inplanes, width, stride, down)]
                blks += [Bottleneck(out, width, 1, None) for _ in range(blocks - 1)]
                stages.append(nn.Sequential(*blks))
                inplanes = out
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(inplanes, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    model = ResNet50(NUM_CLASSES).train()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if params != EXPECTED_PARAMS:
        raise RuntimeError(f"PyTorch model has {params} trainable params, expected {EXPECTED_PARAMS}")
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    x = torch.rand(args.batch, 3, args.resolution, args.resolution, dtype=torch.float32)
    y = torch.randint(0, NUM_CLASSES, (args.batch,), dtype=torch.int64)
    rss_setup = vm_rss_kib()
    log(f"[pytorch] torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{params:,} params; {args.warmup} warmup + {args.iterations} timed iterations")

    totals, fwd, bwd, optim, losses = [], [], [], [], []
    for i in range(args.warmup + args.iterations):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        timed = i >= args.warmup
        ms = (t3 - t0) * 1e3
        log(f"[pytorch] {'iter' if timed else 'warmup'} {i - args.warmup if timed else i}: "
            f"{ms:.1f} ms (fwd {(t1 - t0) * 1e3:.1f}, bwd {(t2 - t1) * 1e3:.1f}, "
            f"opt {(t3 - t2) * 1e3:.1f}), loss {loss.item():.4f}")
        if timed:
            totals.append(ms)
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
            optim.append((t3 - t2) * 1e3)
            losses.append(loss.item())

    phases = {name: {"iterations": vals, **summary(vals)}
              for name, vals in (("forward", fwd), ("backward", bwd), ("optimizer", optim))}
    return {
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "paramCount": params,
        "iterations": totals,
        **summary(totals),
        "phases": phases,
        **memory_fields(rss_setup),
        "loss": losses,
        "notes": (
            "eager, fp32, NCHW, model.train(); iteration = forward + "
            "F.cross_entropy (mean) + backward + torch.optim.SGD(lr=0.1, momentum=0.9, "
            "weight_decay=1e-4 coupled L2 on all params) step + zero_grad(set_to_none=True); "
            "phases timed with perf_counter: forward includes the loss, optimizer = step + "
            f"zero_grad; mkldnn {'on' if torch.backends.mkldnn.is_available() else 'off'}; "
            f"{interop_note}; default PyTorch init; peak RSS = ru_maxrss of this child "
            "process, growth = ru_maxrss - VmRSS after model+optimizer+data creation "
            "(includes warmup)"),
    }


# ------------------------------------------------------------- TensorFlow --

def run_tensorflow(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import numpy as np
        import tensorflow as tf
    except Exception as e:  # ImportError, or a broken install
        raise RuntimeError(
            f"TensorFlow is not importable in {sys.executable} ({type(e).__name__}: {e}); "
            "install it with `pip install tensorflow-cpu` (2.21.0 was used here)") from e
    keras = tf.keras

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.random.set_seed(SEED)
    keras.utils.set_random_seed(SEED)
    L = keras.layers

    def bn(name):  # PyTorch BatchNorm2d defaults: momentum 0.1 (= keras 0.9), eps 1e-5
        return L.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)

    def conv(x, filters, k, stride, name):
        # PyTorch pads symmetrically (k // 2); TF 'same' with stride 2 on even
        # input pads only bottom/right, so pad explicitly there.
        if stride > 1 and k > 1:
            x = L.ZeroPadding2D(k // 2, name=name + "_pad")(x)
            return L.Conv2D(filters, k, strides=stride, padding="valid", use_bias=False, name=name)(x)
        return L.Conv2D(filters, k, strides=stride, padding="same", use_bias=False, name=name)(x)

    def bottleneck(x, width, stride, downsample, name):
        out = width * EXPANSION
        if downsample:
            identity = bn(name + "_down_bn")(conv(x, out, 1, stride, name + "_down_conv"))
        else:
            identity = x
        y = L.ReLU(name=name + "_relu1")(bn(name + "_bn1")(conv(x, width, 1, 1, name + "_conv1")))
        y = L.ReLU(name=name + "_relu2")(bn(name + "_bn2")(conv(y, width, 3, stride, name + "_conv2")))
        y = bn(name + "_bn3")(conv(y, out, 1, 1, name + "_conv3"))
        return L.ReLU(name=name + "_relu3")(L.Add(name=name + "_add")([y, identity]))

    inp = keras.Input(shape=(args.resolution, args.resolution, 3), batch_size=args.batch, name="image")
    x = L.ReLU(name="relu1")(bn("bn1")(conv(inp, 64, 7, 2, "conv1")))
    # max pool 3x3/2 pad 1: zero padding is equivalent to PyTorch's -inf padding
    # here because the input is post-ReLU (>= 0).
    x = L.MaxPooling2D(3, strides=2, padding="valid", name="maxpool")(L.ZeroPadding2D(1, name="maxpool_pad")(x))
    for li, (width, blocks, stride) in enumerate(LAYERS, start=1):
        for bi in range(blocks):
            x = bottleneck(x, width, stride if bi == 0 else 1, bi == 0, f"layer{li}_{bi}")
    x = L.GlobalAveragePooling2D(name="avgpool")(x)
    logits = L.Dense(NUM_CLASSES, name="fc")(x)
    model = keras.Model(inp, logits, name="resnet50_v1_5")

    variables = model.trainable_variables
    params = int(sum(int(np.prod(v.shape)) for v in variables))
    if params != EXPECTED_PARAMS:
        raise RuntimeError(f"TensorFlow model has {params} trainable params, expected {EXPECTED_PARAMS}")
    opt = keras.optimizers.SGD(learning_rate=LR, momentum=MOMENTUM)
    opt.build(variables)

    rng = np.random.default_rng(SEED)
    xs = tf.constant(rng.random((args.batch, args.resolution, args.resolution, 3), dtype=np.float32))
    ys = tf.constant(rng.integers(0, NUM_CLASSES, size=(args.batch,), dtype=np.int32))

    @tf.function(jit_compile=False)
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            out = model(images, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=out))
        grads = tape.gradient(loss, variables)
        # coupled L2 weight decay exactly as torch.optim.SGD: g += wd * w
        grads = [g + WEIGHT_DECAY * v.value for g, v in zip(grads, variables)]
        opt.apply_gradients(zip(grads, variables))
        return loss

    rss_setup = vm_rss_kib()
    log(f"[tensorflow] tensorflow {tf.__version__} (keras {keras.__version__}), intra-op "
        f"{args.threads} / inter-op 1 threads, {params:,} params; {args.warmup} warmup + "
        f"{args.iterations} timed iterations" +
        ("" if args.warmup else " (warmup 0: the first timed iteration includes tracing)"))

    totals, losses = [], []
    for i in range(args.warmup + args.iterations):
        t0 = time.perf_counter()
        loss = train_step(xs, ys).numpy()  # .numpy() waits for the step to finish
        t1 = time.perf_counter()
        timed = i >= args.warmup
        ms = (t1 - t0) * 1e3
        log(f"[tensorflow] {'iter' if timed else 'warmup'} {i - args.warmup if timed else i}: "
            f"{ms:.1f} ms{' (includes tf.function tracing)' if i == 0 else ''}, loss {float(loss):.4f}")
        if timed:
            totals.append(ms)
            losses.append(float(loss))

    onednn = ("oneDNN opts off (TF_ENABLE_ONEDNN_OPTS=0)"
              if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0" else "oneDNN opts on (TF default)")
    return {
        "version": tf.__version__,
        "threads": args.threads,
        "paramCount": params,
        "iterations": totals,
        **summary(totals),
        "phases": None,
        **memory_fields(rss_setup),
        "loss": losses,
        "notes": (
            f"keras {keras.__version__}; fp32, NHWC (channels_last, the default); hand-written "
            "ResNet-50 v1.5 from tf.keras layers (explicit ZeroPadding2D before stride-2 convs "
            "and the max pool to match PyTorch's symmetric padding; BN momentum 0.9/eps 1e-5 "
            "as PyTorch); whole step in one tf.function(jit_compile=False) with GradientTape, "
            "model(training=True), mean sparse softmax cross-entropy, keras SGD(lr=0.1, "
            "momentum=0.9); weight decay 1e-4 added as coupled L2 (grad += 1e-4 * w on every "
            "trainable variable, incl. BN and biases, before apply_gradients) which matches "
            "torch.optim.SGD(weight_decay) exactly; keras SGD(weight_decay=) would be decoupled "
            "so it is not used; only the whole step is timed (one graph call, no per-phase "
            f"split: phases null); intra-op threads {args.threads}, inter-op 1; {onednn}; "
            "default Keras init; peak RSS = ru_maxrss of this child "
            "process, growth = ru_maxrss - VmRSS after model+optimizer+data creation "
            "(includes warmup and tracing)"),
    }


# ----------------------------------------------------------------- parent --

def child_main(args):
    runner = run_pytorch if args.child == "pytorch" else run_tensorflow
    try:
        result = runner(args)
    except Exception as e:
        result = {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def run_child(framework, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", framework,
           "--batch", str(args.batch), "--iterations", str(args.iterations),
           "--warmup", str(args.warmup), "--threads", str(args.threads),
           "--resolution", str(args.resolution)]
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log(f"[{framework}] starting child process")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, env=env, text=True)
    log(f"[{framework}] child finished in {time.perf_counter() - t0:.1f} s (exit {proc.returncode})")
    for line in reversed(proc.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    return {"error": f"child process for {framework} exited {proc.returncode} without a JSON result"}


def human_line(framework, r, batch, resolution):
    if "error" in r:
        return f"{framework}: FAILED: {r['error']}"
    s = (f"{framework} {r['version']}: ResNet-50 v1.5 train step, batch {batch} @{resolution}, "
         f"{r['threads']} threads, {r['paramCount']:,} params: median {r['medianMs']:.1f} ms "
         f"(min {r['minMs']:.1f}, max {r['maxMs']:.1f}) over {len(r['iterations'])} iterations")
    if r.get("phases"):
        ph = r["phases"]
        s += (f"; median fwd+loss {ph['forward']['medianMs']:.1f} / bwd {ph['backward']['medianMs']:.1f}"
              f" / opt {ph['optimizer']['medianMs']:.1f} ms")
    else:
        s += "; phases n/a (whole tf.function step)"
    growth = r.get("rssGrowthMiB")
    s += (f"; peak RSS {r['peakRssMiB']:.0f} MiB"
          f" (+{growth:.0f} MiB after model+data)" if growth is not None else " (growth n/a)")
    return s


def main(argv):
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    frameworks = FRAMEWORKS if args.framework == "both" else (args.framework,)
    results = {fw: run_child(fw, args) for fw in frameworks}
    out = sys.stderr if args.json else sys.stdout
    for fw in frameworks:
        print(human_line(fw, results[fw], args.batch, args.resolution), file=out, flush=True)
    if args.json:
        print(json.dumps({"machine": machine_info(), "batch": args.batch,
                          "resolution": args.resolution, "results": results}), flush=True)
    failed = [fw for fw in frameworks if "error" in results[fw]]
    for fw in failed:
        print(f"{PROG}: error: {fw} could not run: {results[fw]['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
