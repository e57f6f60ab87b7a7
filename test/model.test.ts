// ResNet-50 v1.5 as data: 53 convolutions with the original names and shapes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { uniqueShapes } from '../src/bench/conv-bench';
import { resnet50Convs } from '../src/model/resnet50';

test('ResNet-50 has 53 convolutions named as in the original model', () => {
  const convs = resnet50Convs({ batch: 8 });
  assert.equal(convs.length, 53);
  assert.equal(convs[0].name, 'conv1');
  assert.equal(convs[1].name, 'res2a_branch1');
  assert.equal(convs.at(-1)!.name, 'res5c_branch2c');
  assert.equal(new Set(convs.map((c) => c.name)).size, 53);
  for (const name of ['res3d_branch2b', 'res4f_branch2c', 'res5a_branch1']) assert.ok(convs.some((c) => c.name === name));
});

test('shapes follow v1.5: the stride sits on the 3x3 convolution', () => {
  const by = new Map(resnet50Convs({ batch: 8 }).map((c) => [c.name, c.shape]));
  assert.deepEqual(by.get('conv1'), { n: 8, c: 3, h: 224, w: 224, k: 64, r: 7, s: 7, stride: 2, pad: 3 });
  assert.deepEqual(by.get('res3a_branch2a'), { n: 8, c: 256, h: 56, w: 56, k: 128, r: 1, s: 1, stride: 1, pad: 0 });
  assert.deepEqual(by.get('res3a_branch2b'), { n: 8, c: 128, h: 56, w: 56, k: 128, r: 3, s: 3, stride: 2, pad: 1 });
  assert.deepEqual(by.get('res3a_branch1'), { n: 8, c: 256, h: 56, w: 56, k: 512, r: 1, s: 1, stride: 2, pad: 0 });
  assert.deepEqual(by.get('res5c_branch2c'), { n: 8, c: 512, h: 7, w: 7, k: 2048, r: 1, s: 1, stride: 1, pad: 0 });
});

test('the convolution weights add up to ResNet-50 less its fc and batch-norm parameters', () => {
  const weights = resnet50Convs({ batch: 1 }).reduce((sum, c) => sum + c.shape.k * c.shape.c * c.shape.r * c.shape.s, 0);
  // 25,557,032 parameters in all; fc has 2048*1000+1000, batch norm 2 per channel.
  assert.equal(weights, 25_557_032 - 2_049_000 - 53_120);
});

test('identical shapes are grouped so they are measured once', () => {
  const groups = uniqueShapes(resnet50Convs({ batch: 8 }));
  assert.ok(groups.length < 53 && groups.length >= 20);
  const g = groups.find((x) => x.first.name === 'res2b_branch2a')!;
  assert.deepEqual(g.all.map((l) => l.name), ['res2b_branch2a', 'res2c_branch2a']);
});
