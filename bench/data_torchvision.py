#!/usr/bin/env python3
"""torchvision peer for the input pipeline benchmark: the ImageNet training
transform as PyTorch users run it, one image at a time on one thread:

  PIL.Image.open(path).convert('RGB')
  RandomResizedCrop(224)            scale (0.08, 1), ratio (3/4, 4/3), bilinear, antialias
  RandomHorizontalFlip()            p = 0.5
  ToTensor()                        uint8 HWC -> float CHW in [0, 1]
  Normalize(ImageNet mean, std)

(torchvision.datasets.ImageFolder's loader and a DataLoader worker do exactly
this per sample.) One JSON line per request on stdin ("round"): one pass over
the files, {"imagesPerSec": x}. The first line out is {"peer": ..., versions}.

Usage: python3 bench/data_torchvision.py --files list.txt [--size 224] [--serve]
Without --serve: --rounds N passes, printed as one JSON object.

torchvision's CUDA wheel next to torch's CPU wheel cannot load its C++ ops
(libtorch_cuda missing); the transforms used here do not need them, so their
registration module is stubbed out before the import.
"""

import argparse
import json
import sys
import time
import types

sys.modules.setdefault('torchvision._meta_registrations', types.ModuleType('torchvision._meta_registrations'))

import PIL  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms as T  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--files', required=True, help='a text file with one JPEG path per line')
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--serve', action='store_true')
    a = p.parse_args()
    torch.set_num_threads(1)
    files = [l.strip() for l in open(a.files) if l.strip()]
    if not files:
        print('no files', file=sys.stderr)
        sys.exit(2)
    tf = T.Compose([
        T.RandomResizedCrop(a.size), T.RandomHorizontalFlip(), T.ToTensor(),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    torch.manual_seed(1)

    def one_round():
        t0 = time.perf_counter()
        for f in files:
            with open(f, 'rb') as fh:
                img = Image.open(fh).convert('RGB')
            tf(img)
        return len(files) / (time.perf_counter() - t0)

    hello = {'peer': 'torchvision', 'torch': torch.__version__, 'torchvision': torchvision.__version__, 'pillow': PIL.__version__, 'threads': 1}
    if not a.serve:
        rates = [one_round() for _ in range(a.rounds)]
        print(json.dumps({**hello, 'imagesPerSec': rates}))
        return
    print(json.dumps(hello), flush=True)
    for line in sys.stdin:
        if line.strip() == 'round':
            print(json.dumps({'imagesPerSec': one_round()}), flush=True)


if __name__ == '__main__':
    main()
