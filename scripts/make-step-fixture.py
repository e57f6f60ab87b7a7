#!/usr/bin/env python3
"""Write a reference ResNet-50 v1.5 training step as safetensors files.

Builds a narrow ResNet-50 (same topology and parameter names as
torchvision.models.resnet50, base width W instead of 64), runs one SGD step on a
seeded batch in train mode, and writes:

  weights.safetensors   every state_dict entry BEFORE the step (no num_batches_tracked)
  batch.safetensors     "input" F32 [N,3,R,R], "labels" I64 [N]
  expected.safetensors  "loss" F32 [1], "logits" F32 [N,C], "grad.<param>",
                        "updated.<state_dict entry>" after the step; run settings in __metadata__

Needs only torch (no torchvision). Uses the `safetensors` package when it is
importable, otherwise writes the format by hand.

Fixture in test/fixtures/step-small/ is regenerated with:
  python3 scripts/make-step-fixture.py --width 4 --classes 10 --resolution 64 --batch 2 --out test/fixtures/step-small
"""
import argparse
import json
import os
import sys
import tempfile

import torch
import torch.nn as nn


# ---------------------------------------------------------------------------
# The network: mirrors torchvision.models.resnet (Bottleneck, [3, 4, 6, 3]).


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, kernel_size=1, stride=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        # v1.5: the stride sits on the 3x3 convolution.
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, kernel_size=1, stride=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet50(nn.Module):
    def __init__(self, width=64, num_classes=1000, layers=(3, 4, 6, 3)):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0], stride=1)
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * Bottleneck.expansion, num_classes)

    def _make_layer(self, planes, blocks, stride):
        # torchvision gives every layer's first block a downsample (layer1 too:
        # its channel count changes from W to 4W even though stride is 1).
        downsample = nn.Sequential(
            nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * Bottleneck.expansion),
        )
        mods = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        for _ in range(1, blocks):
            mods.append(Bottleneck(self.inplanes, planes))
        return nn.Sequential(*mods)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


# ---------------------------------------------------------------------------
# safetensors output


DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.int32: "I32"}


def write_safetensors_by_hand(path, tensors, metadata=None):
    """8-byte LE header length, JSON header padded with spaces to 8 bytes, raw LE data."""
    assert sys.byteorder == "little", "raw tensor bytes are written in host order"
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().clone().contiguous()
        data = bytes(t.untyped_storage())
        assert len(data) == t.numel() * t.element_size()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix="." + os.path.basename(path) + ".tmp-")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        with os.fdopen(fd, "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for c in chunks:
                f.write(c)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_safetensors(path, tensors, metadata=None):
    for name, t in tensors.items():
        if t.dtype not in DTYPES:
            raise SystemExit(f"{path}: tensor '{name}' has dtype {t.dtype}; allowed {list(DTYPES)}")
    try:
        from safetensors.torch import save_file  # type: ignore
    except ImportError:
        write_safetensors_by_hand(path, tensors, metadata)
    else:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path, metadata=metadata)


# ---------------------------------------------------------------------------


def state_without_counters(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=4, help="base width W (torchvision ResNet-50: 64)")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "step-small"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    try:
        torch.use_deterministic_algorithms(True)
    except Exception as e:  # pragma: no cover - depends on the torch build
        print(f"note: deterministic algorithms unavailable ({e})", file=sys.stderr)

    # Model: default PyTorch init, then non-trivial BatchNorm parameters and stats.
    torch.manual_seed(0)
    model = ResNet50(width=args.width, num_classes=args.classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model.train()

    # Batch: its own seed so that it does not depend on the model's draws.
    torch.manual_seed(1)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution, dtype=torch.float32)
    labels = torch.tensor([3, 7] if args.batch == 2 else [(3 + 4 * i) % args.classes for i in range(args.batch)], dtype=torch.int64)
    if int(labels.max()) >= args.classes:
        raise SystemExit(f"labels {labels.tolist()} need at least {int(labels.max()) + 1} classes, got --classes {args.classes}")

    before = state_without_counters(model)
    params = dict(model.named_parameters())
    n_params = sum(p.numel() for p in params.values())

    criterion = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    opt.zero_grad()
    logits = model(x)
    loss = criterion(logits, labels)
    loss.backward()
    grads = {f"grad.{k}": p.grad.detach().clone() for k, p in params.items()}
    opt.step()
    after = state_without_counters(model)

    os.makedirs(args.out, exist_ok=True)
    metadata = {
        "width": str(args.width),
        "classes": str(args.classes),
        "resolution": str(args.resolution),
        "batch": str(args.batch),
        "lr": str(args.lr),
        "momentum": str(args.momentum),
        "weight_decay": str(args.weight_decay),
        "torch": torch.__version__,
    }
    expected = {"loss": loss.detach().reshape(1), "logits": logits.detach()}
    expected.update(grads)
    expected.update({f"updated.{k}": v for k, v in after.items()})
    write_safetensors(os.path.join(args.out, "weights.safetensors"), before)
    write_safetensors(os.path.join(args.out, "batch.safetensors"), {"input": x, "labels": labels})
    write_safetensors(os.path.join(args.out, "expected.safetensors"), expected, metadata)

    n_buffers = sum(v.numel() for k, v in before.items() if k not in params)
    print(f"loss {loss.item():.9g}")
    print(f"parameters {n_params} ({len(params)} tensors); BN running stats {n_buffers}; state_dict entries saved {len(before)}")
    print(f"wrote {os.path.normpath(args.out)}")


if __name__ == "__main__":
    main()
