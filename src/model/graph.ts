// ResNet-50 v1.5 as a graph of ops for the training step: every node with its
// exact shapes, the Caffe-style layer names used across stepscope (conv1,
// bn_conv1, res2a_branch2a, bn2a_branch2a, res2a, pool1, fc1000) and
// torchvision's parameter names (conv1.weight, layer1.0.bn2.running_mean,
// fc.bias), so weights move between PyTorch and stepscope by name.
import type { ConvShape } from '../../binding';
import { resnet50Convs, type ResNetScale } from './resnet50';

export interface ParamSpec {
  name: string; // torchvision name
  shape: number[];
  /** Trained by SGD (weights, biases) or a batch-norm running statistic. */
  trainable: boolean;
}

interface NodeBase {
  name: string;
  inputs: string[];
  output: string;
}

export type GraphNode =
  | (NodeBase & { kind: 'conv'; shape: ConvShape; weight: string })
  | (NodeBase & { kind: 'batchnorm'; n: number; c: number; hw: number; weight: string; bias: string; runningMean: string; runningVar: string })
  | (NodeBase & { kind: 'relu'; size: number })
  | (NodeBase & { kind: 'maxpool'; n: number; c: number; h: number; w: number })
  | (NodeBase & { kind: 'add'; size: number; relu: boolean })
  | (NodeBase & { kind: 'avgpool'; n: number; c: number; hw: number })
  | (NodeBase & { kind: 'fc'; n: number; in: number; out: number; weight: string; bias: string });

export type NodeKind = GraphNode['kind'];

export interface ResNetGraph {
  nodes: GraphNode[];
  /** Length of every tensor the nodes produce or read, by name. */
  tensors: Map<string, number>;
  params: ParamSpec[];
  input: string;
  logits: string;
  batch: number;
  classes: number;
  inputShape: [number, number, number, number];
}

export interface GraphScale extends ResNetScale {
  classes?: number; // default 1000
}

/** torchvision's module path for a Caffe-style conv name. */
export function torchvisionModule(conv: string): { conv: string; bn: string } {
  if (conv === 'conv1') return { conv: 'conv1', bn: 'bn1' };
  const m = /^res(\d)([a-z])_branch(1|2a|2b|2c)$/.exec(conv);
  if (!m) throw new Error(`not a ResNet-50 conv name: ${conv}`);
  const block = `layer${Number(m[1]) - 1}.${m[2].charCodeAt(0) - 97}`;
  if (m[3] === '1') return { conv: `${block}.downsample.0`, bn: `${block}.downsample.1` };
  const i = { '2a': 1, '2b': 2, '2c': 3 }[m[3] as '2a' | '2b' | '2c'];
  return { conv: `${block}.conv${i}`, bn: `${block}.bn${i}` };
}

/** The Caffe-style batch-norm name for a conv: conv1 -> bn_conv1, res2a_branch2a -> bn2a_branch2a. */
export function bnName(conv: string): string {
  return conv === 'conv1' ? 'bn_conv1' : conv.replace(/^res/, 'bn');
}

export function resnet50Graph(scale: GraphScale): ResNetGraph {
  const classes = scale.classes ?? 1000;
  const convs = new Map(resnet50Convs(scale).map((c) => [c.name, c.shape]));
  const nodes: GraphNode[] = [];
  const tensors = new Map<string, number>();
  const params: ParamSpec[] = [];
  const size = (s: { n: number; c: number; h: number; w: number }) => s.n * s.c * s.h * s.w;
  const outShape = (s: ConvShape) => ({
    n: s.n, c: s.k,
    h: Math.floor((s.h + 2 * s.pad - s.r) / s.stride) + 1,
    w: Math.floor((s.w + 2 * s.pad - s.s) / s.stride) + 1,
  });

  // conv -> batch norm (-> relu); returns the last tensor's name.
  const convBn = (name: string, input: string, relu: boolean): string => {
    const shape = convs.get(name)!;
    const tv = torchvisionModule(name);
    const out = outShape(shape);
    const hw = out.h * out.w;
    params.push({ name: `${tv.conv}.weight`, shape: [shape.k, shape.c, shape.r, shape.s], trainable: true });
    nodes.push({ kind: 'conv', name, inputs: [input], output: name, shape, weight: `${tv.conv}.weight` });
    tensors.set(name, size(out));
    const bn = bnName(name);
    for (const p of ['weight', 'bias']) params.push({ name: `${tv.bn}.${p}`, shape: [shape.k], trainable: true });
    for (const p of ['running_mean', 'running_var']) params.push({ name: `${tv.bn}.${p}`, shape: [shape.k], trainable: false });
    nodes.push({
      kind: 'batchnorm', name: bn, inputs: [name], output: bn, n: out.n, c: out.c, hw,
      weight: `${tv.bn}.weight`, bias: `${tv.bn}.bias`, runningMean: `${tv.bn}.running_mean`, runningVar: `${tv.bn}.running_var`,
    });
    tensors.set(bn, size(out));
    if (!relu) return bn;
    nodes.push({ kind: 'relu', name: `${name}_relu`, inputs: [bn], output: `${name}_relu`, size: size(out) });
    tensors.set(`${name}_relu`, size(out));
    return `${name}_relu`;
  };

  const first = convs.get('conv1')!;
  const input = 'data';
  tensors.set(input, size(first));
  let x = convBn('conv1', input, true);
  const c1 = outShape(first);
  const pooled = { n: c1.n, c: c1.c, h: Math.floor((c1.h + 2 - 3) / 2) + 1, w: Math.floor((c1.w + 2 - 3) / 2) + 1 };
  nodes.push({ kind: 'maxpool', name: 'pool1', inputs: [x], output: 'pool1', n: c1.n, c: c1.c, h: c1.h, w: c1.w });
  tensors.set('pool1', size(pooled));
  x = 'pool1';

  const blocks = [...convs.keys()].filter((n) => n.endsWith('_branch2a')).map((n) => n.replace('_branch2a', ''));
  for (const block of blocks) {
    const a = convBn(`${block}_branch2a`, x, true);
    const b = convBn(`${block}_branch2b`, a, true);
    const c = convBn(`${block}_branch2c`, b, false);
    const shortcut = convs.has(`${block}_branch1`) ? convBn(`${block}_branch1`, x, false) : x;
    const length = tensors.get(c)!;
    nodes.push({ kind: 'add', name: block, inputs: [c, shortcut], output: block, size: length, relu: true });
    tensors.set(block, length);
    x = block;
  }

  const last = convs.get('res5c_branch2c')!;
  const lastOut = outShape(last);
  nodes.push({ kind: 'avgpool', name: 'pool5', inputs: [x], output: 'pool5', n: lastOut.n, c: lastOut.c, hw: lastOut.h * lastOut.w });
  tensors.set('pool5', lastOut.n * lastOut.c);
  params.push({ name: 'fc.weight', shape: [classes, lastOut.c], trainable: true }, { name: 'fc.bias', shape: [classes], trainable: true });
  nodes.push({ kind: 'fc', name: `fc${classes}`, inputs: ['pool5'], output: 'logits', n: lastOut.n, in: lastOut.c, out: classes, weight: 'fc.weight', bias: 'fc.bias' });
  tensors.set('logits', lastOut.n * classes);

  return { nodes, tensors, params, input, logits: 'logits', batch: scale.batch, classes, inputShape: [first.n, first.c, first.h, first.w] };
}

export function paramCount(graph: ResNetGraph, trainableOnly = true): number {
  return graph.params.filter((p) => p.trainable || !trainableOnly).reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
}
