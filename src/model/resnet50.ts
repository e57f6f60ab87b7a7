// ResNet-50 v1.5 as data: the 53 convolutions with their names from the
// original model (conv1, res2a_branch1, res2a_branch2a, ... res5c_branch2c)
// and exact shapes. v1.5 puts the stride of a downsampling block on the 3x3
// convolution (branch2b), as torchvision does. The network scales down with
// the same topology: batch, input resolution and base width.
import type { ConvShape } from '../../binding';

export interface ConvLayer {
  name: string;
  shape: ConvShape;
}

export interface ResNetScale {
  batch: number;
  resolution?: number; // input height and width, default 224
  width?: number; // channels of the first stage's bottleneck, default 64
}

/** Blocks per stage (res2..res5) and whether the stage downsamples. */
const STAGES = [
  { stage: 2, blocks: 3, stride: 1 },
  { stage: 3, blocks: 4, stride: 2 },
  { stage: 4, blocks: 6, stride: 2 },
  { stage: 5, blocks: 3, stride: 2 },
] as const;

const EXPANSION = 4;

function outSize(size: number, kernel: number, stride: number, pad: number): number {
  return Math.floor((size + 2 * pad - kernel) / stride) + 1;
}

export function resnet50Convs(scale: ResNetScale): ConvLayer[] {
  const n = scale.batch;
  const resolution = scale.resolution ?? 224;
  const width = scale.width ?? 64;
  const layers: ConvLayer[] = [];
  const conv = (name: string, c: number, size: number, k: number, r: number, stride: number): number => {
    const pad = (r - 1) / 2;
    layers.push({ name, shape: { n, c, h: size, w: size, k, r, s: r, stride, pad } });
    return outSize(size, r, stride, pad);
  };

  let size = conv('conv1', 3, resolution, width, 7, 2);
  size = outSize(size, 3, 2, 1); // max-pool 3x3 stride 2
  let channels = width;
  STAGES.forEach(({ stage, blocks, stride }, i) => {
    const mid = width * 2 ** i;
    const out = mid * EXPANSION;
    for (let b = 0; b < blocks; b++) {
      const block = `res${stage}${String.fromCharCode(97 + b)}`;
      const blockStride = b === 0 ? stride : 1;
      if (b === 0) conv(`${block}_branch1`, channels, size, out, 1, blockStride);
      conv(`${block}_branch2a`, channels, size, mid, 1, 1);
      const next = conv(`${block}_branch2b`, mid, size, mid, 3, blockStride);
      conv(`${block}_branch2c`, mid, next, out, 1, 1);
      size = next;
      channels = out;
    }
  });
  return layers;
}

/** e.g. "3x3/2": what the tests call a shape class. */
export function shapeClass(shape: ConvShape): string {
  return `${shape.r}x${shape.s}/${shape.stride}`;
}

export function describeShape(shape: ConvShape): string {
  return `c${shape.c} ${shape.h}x${shape.w} k${shape.k} ${shape.r}x${shape.s}/${shape.stride}`;
}

export function convFlops(shape: ConvShape): number {
  const p = outSize(shape.h, shape.r, shape.stride, shape.pad);
  const q = outSize(shape.w, shape.s, shape.stride, shape.pad);
  return 2 * shape.n * shape.k * p * q * shape.c * shape.r * shape.s;
}
