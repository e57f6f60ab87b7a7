#!/usr/bin/env python3
"""PyTorch CPU peer measurement for the convolution microbenchmark.

Times PyTorch's CPU 2-D convolution (fp32, NCHW, no bias, dilation 1,
groups 1) for each shape in a JSON file and for up to three passes:

  fwd         torch.nn.functional.conv2d(x, w, stride, padding)
  bwd-data    gradient w.r.t. the input only   (aten.convolution_backward,
              output_mask [True, False, False])
  bwd-filter  gradient w.r.t. the weight only  (aten.convolution_backward,
              output_mask [False, True, False])

Each timed run is a single call measured with time.perf_counter() (CPU ops are
synchronous). After --warmup untimed calls, --repeat calls are timed and the
median, min and max are reported in milliseconds.

Usage:
  python3 bench/pytorch_conv.py --shapes shapes.json \
      [--repeat 5] [--warmup 1] [--threads 2] [--passes fwd,bwd-data,bwd-filter]

shapes.json is a JSON array of objects:
  {"key": "name", "n":.., "c":.., "h":.., "w":.., "k":.., "r":.., "s":..,
   "stride":.., "pad":..}
Input is [n,c,h,w], weight [k,c,r,s], output [n,k,p,q] with
p = (h + 2*pad - r) // stride + 1 and q likewise.

Output: one JSON object on stdout
  {"peer": "pytorch", "version": ..., "threads": N, "mkldnn": bool,
   "rows": [{"key", "pass", "medianMs", "minMs", "maxMs"}, ...]}
Progress goes to stderr. Bad input exits with code 2.
"""

import argparse
import json
import statistics
import sys
import time

import torch

PASSES = ("fwd", "bwd-data", "bwd-filter")
INT_FIELDS = ("n", "c", "h", "w", "k", "r", "s", "stride", "pad")
SEED = 1234


def fail(msg):
    print(f"pytorch_conv.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_passes(text):
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        fail(f"--passes {text!r} is empty; allowed: {','.join(PASSES)}")
    for name in names:
        if name not in PASSES:
            fail(f"unknown pass {name!r} in --passes; allowed: {', '.join(PASSES)}")
    return list(dict.fromkeys(names))  # de-duplicate, keep order


def out_size(size, kernel, stride, pad):
    return (size + 2 * pad - kernel) // stride + 1


def validate_shape(item, where, error=None):
    """Checks one shape object; returns it with p and q added. Calls `error`
    (default: fail, exit 2) with a message naming the bad field."""
    error = error or fail
    if not isinstance(item, dict):
        return error(f"{where} is {type(item).__name__}; allowed: an object with "
                     f"'key' and {', '.join(INT_FIELDS)}")
    key = item.get("key")
    if not isinstance(key, str) or not key:
        return error(f"{where}: 'key' is {key!r}; allowed: a non-empty string")
    where = f"{where} (key {key!r})"
    shape = {"key": key}
    for field in INT_FIELDS:
        if field not in item:
            return error(f"{where}: missing field {field!r}; required: key, {', '.join(INT_FIELDS)}")
        v = item[field]
        if isinstance(v, bool) or not isinstance(v, int):
            return error(f"{where}: {field}={v!r}; allowed: an integer")
        lo = 0 if field == "pad" else 1
        if v < lo:
            allowed = "an integer >= 0" if lo == 0 else "a positive integer"
            return error(f"{where}: {field}={v}; allowed: {allowed}")
        shape[field] = v
    p = out_size(shape["h"], shape["r"], shape["stride"], shape["pad"])
    q = out_size(shape["w"], shape["s"], shape["stride"], shape["pad"])
    if p < 1 or q < 1:
        return error(f"{where}: output would be {p}x{q}; need r <= h+2*pad and s <= w+2*pad")
    shape["p"], shape["q"] = p, q
    return shape


def serve():
    """Serve mode: one JSON request per stdin line, {key, n..pad, pass, runs,
    warmup}; one JSON answer per stdout line, {"ms": [...]} or {"error": ...}.
    Lets a driver interleave PyTorch's runs with its own, so both see the same
    machine state (this benchmark's VM is noisy)."""
    print(json.dumps({"ready": True, "peer": "pytorch", "version": torch.__version__,
                      "threads": torch.get_num_threads(),
                      "mkldnn": torch.backends.mkldnn.is_available()}), flush=True)
    cached_id, cached_fn = None, None

    class BadRequest(Exception):
        pass

    def reject(msg):
        raise BadRequest(msg)

    with torch.no_grad():
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                req = json.loads(line)
                shape = validate_shape(req, "request", reject)
                pass_name = req.get("pass")
                if pass_name not in PASSES:
                    reject(f"pass {pass_name!r}; allowed: {', '.join(PASSES)}")
                runs, warmup = req.get("runs", 1), req.get("warmup", 0)
                if not isinstance(runs, int) or runs < 1 or not isinstance(warmup, int) or warmup < 0:
                    reject(f"runs={runs!r}, warmup={warmup!r}; allowed: runs >= 1, warmup >= 0")
                ident = (json.dumps(shape, sort_keys=True), pass_name)
                if ident != cached_id:
                    cached_id, cached_fn = ident, make_call(shape, pass_name)
                answer = {"ms": time_call(cached_fn, warmup, runs)}
            except (BadRequest, json.JSONDecodeError) as e:
                answer = {"error": str(e)}
            print(json.dumps(answer), flush=True)


def load_shapes(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        fail(f"shapes file {path!r} not found")
    except OSError as e:
        fail(f"cannot read shapes file {path!r}: {e.strerror}")
    except json.JSONDecodeError as e:
        fail(f"shapes file {path!r} is not valid JSON: {e}")

    if not isinstance(data, list) or not data:
        fail(f"shapes file {path!r} must hold a non-empty JSON array of shape objects")

    shapes, seen = [], set()
    for i, item in enumerate(data):
        shape = validate_shape(item, f"shape #{i}")
        if shape["key"] in seen:
            fail(f"shape #{i} (key {shape['key']!r}): duplicate key; keys must be unique")
        seen.add(shape["key"])
        shapes.append(shape)
    return shapes


def make_call(shape, pass_name):
    """Build fresh seeded random tensors and return a no-arg callable for one run."""
    n, c, h, w = shape["n"], shape["c"], shape["h"], shape["w"]
    k, r, s = shape["k"], shape["r"], shape["s"]
    stride, pad = shape["stride"], shape["pad"]
    p, q = shape["p"], shape["q"]

    gen = torch.Generator().manual_seed(SEED)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float32)
    wt = torch.randn(k, c, r, s, generator=gen, dtype=torch.float32)

    if pass_name == "fwd":
        return lambda: torch.nn.functional.conv2d(x, wt, None, stride, pad)

    grad_out = torch.randn(n, k, p, q, generator=gen, dtype=torch.float32)
    mask = [True, False, False] if pass_name == "bwd-data" else [False, True, False]
    op = torch.ops.aten.convolution_backward
    return lambda: op(grad_out, x, wt, None, [stride, stride], [pad, pad],
                      [1, 1], False, [0, 0], 1, mask)


def time_call(fn, warmup, repeat):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main():
    ap = argparse.ArgumentParser(description="Time PyTorch CPU conv2d (fp32, NCHW) per shape and pass.")
    ap.add_argument("--shapes", help="JSON array of shape objects (required unless --serve)")
    ap.add_argument("--serve", action="store_true", help="answer timing requests on stdin (JSON lines)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per shape and pass (>= 1)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (>= 0)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads value (>= 1)")
    ap.add_argument("--passes", default=",".join(PASSES),
                    help=f"comma-separated subset of {','.join(PASSES)}")
    args = ap.parse_args()

    if args.repeat < 1:
        fail(f"--repeat {args.repeat}; allowed: an integer >= 1")
    if args.warmup < 0:
        fail(f"--warmup {args.warmup}; allowed: an integer >= 0")
    if args.threads < 1:
        fail(f"--threads {args.threads}; allowed: an integer >= 1")
    torch.set_num_threads(args.threads)
    if args.serve:
        return serve()
    if not args.shapes:
        fail("--shapes is required unless --serve is given")
    passes = parse_passes(args.passes)
    shapes = load_shapes(args.shapes)

    log(f"pytorch {torch.__version__}, threads={torch.get_num_threads()}, "
        f"mkldnn={torch.backends.mkldnn.is_available()}, "
        f"{len(shapes)} shape(s) x {len(passes)} pass(es), warmup={args.warmup}, repeat={args.repeat}")

    rows = []
    with torch.no_grad():
        for shape in shapes:
            for pass_name in passes:
                fn = make_call(shape, pass_name)
                times = time_call(fn, args.warmup, args.repeat)
                row = {
                    "key": shape["key"],
                    "pass": pass_name,
                    "medianMs": statistics.median(times),
                    "minMs": min(times),
                    "maxMs": max(times),
                }
                rows.append(row)
                log(f"  {shape['key']:<20} {pass_name:<10} median {row['medianMs']:.3f} ms "
                    f"(min {row['minMs']:.3f}, max {row['maxMs']:.3f})")

    print(json.dumps({
        "peer": "pytorch",
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "rows": rows,
    }))


if __name__ == "__main__":
    main()
