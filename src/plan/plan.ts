// A plan says which variant runs for each op and layer: defaults per op
// kind, overrides per layer (node name) and, for convolutions, per layer and
// pass (`res2a_branch2b/bwd-data`: what `step --save-plan` writes for
// cudnn:autotune, the algorithm it chose for each pass). It is plain JSON a
// user can save, edit and replay, or the `--kernels
// conv=onednn,res2a_branch2b=im2col-gemm` shorthand. `batchnorm=fused-relu`
// fuses each batch norm with the ReLU after it.
import * as fs from 'node:fs';
import { UsageError } from '../errors';
import type { NodeKind, ResNetGraph } from '../model/graph';
import type { Backend } from '../backend';
import { cudaAddonIfLoaded } from '../native-cuda';
import { availableConvVariants } from '../variants';
import type { ConvPass } from '../../binding';

const PASS_NAMES: readonly ConvPass[] = ['fwd', 'bwd-data', 'bwd-filter'];

/** Op kinds a plan names: the graph's node kinds, plus the loss and the optimizer. */
export const PLAN_OPS = ['conv', 'batchnorm', 'relu', 'maxpool', 'add', 'avgpool', 'fc', 'loss', 'sgd'] as const;
export type PlanOp = (typeof PLAN_OPS)[number];

export interface Plan {
  ops: Record<PlanOp, string>;
  /** Per-layer overrides, by node name (res2a_branch2b, bn2a_branch2a, pool1, res2a, fc1000, ...), and per conv layer and pass (res2a_branch2b/fwd). */
  layers: Record<string, string>;
}

/**
 * The variants a plan may name for an op on a backend. On CUDA the other ops
 * have one variant (`cuda`; batch norm also `fused-relu` and cuDNN's `cudnn`); convolutions take
 * the CUDA addon's variants (cudnn:*, our own kernels).
 */
export function allowedVariants(op: PlanOp, backend: Backend = 'cpu'): string[] {
  if (backend === 'cuda') {
    if (op === 'conv') return (cudaAddonIfLoaded()?.convVariants() ?? []).map((v) => v.name);
    return op === 'batchnorm' ? ['cuda', 'fused-relu', 'cudnn'] : ['cuda'];
  }
  if (op === 'conv') return availableConvVariants().all;
  if (op === 'batchnorm') return ['reference', 'fast', 'fused-relu'];
  return ['reference', 'fast'];
}

export function defaultPlan(backend: Backend = 'cpu'): Plan {
  if (backend === 'cuda') {
    return {
      ops: { conv: 'cudnn:heuristic', batchnorm: 'fused-relu', relu: 'cuda', maxpool: 'cuda', add: 'cuda', avgpool: 'cuda', fc: 'cuda', loss: 'cuda', sgd: 'cuda' },
      layers: {},
    };
  }
  const conv = availableConvVariants().all.includes('onednn') ? 'onednn' : 'im2col-gemm';
  return {
    ops: { conv, batchnorm: 'fused-relu', relu: 'fast', maxpool: 'fast', add: 'fast', avgpool: 'fast', fc: 'fast', loss: 'fast', sgd: 'fast' },
    layers: {},
  };
}

function checkVariant(what: string, op: PlanOp, variant: string, backend: Backend): void {
  const allowed = allowedVariants(op, backend);
  if (!allowed.includes(variant)) {
    throw new UsageError(`${what}: variant '${variant}' is not allowed for ${op}; allowed: ${allowed.join(', ')}`);
  }
}

/**
 * Applies `op=variant` and `layer=variant` pairs (comma separated) or a plan
 * JSON file ({"ops": {...}, "layers": {...}}) on top of `base` (the default
 * plan, or for `whatif` the run's own: see applyPairs).
 */
export function parsePlan(text: string, graph: ResNetGraph, backend: Backend = 'cpu', base?: Plan): Plan {
  if (text === '') return base ? copyPlan(base) : defaultPlan(backend); // no --kernels
  if (text.endsWith('.json') || fs.existsSync(text)) {
    let json: unknown;
    try {
      json = JSON.parse(fs.readFileSync(text, 'utf8'));
    } catch (err) {
      throw new UsageError(`--kernels: cannot read plan file '${text}': ${(err as Error).message}`);
    }
    return planFromJson(json, graph, backend, `--kernels: plan file '${text}'`, base);
  }
  const pairs = text.split(',').filter((s) => s.trim()).map((item): [string, string] => {
    const [key, value, extra] = item.split('=').map((s) => s.trim());
    if (!key || !value || extra !== undefined) throw new UsageError(`--kernels: '${item}' is not of the form op=variant or layer=variant`);
    return [key, value];
  });
  if (pairs.length === 0) throw new UsageError(`--kernels '${text}' names nothing: give op=variant or layer=variant pairs (comma separated) or a plan file`);
  return applyPairs(pairs, graph, backend, base);
}

/**
 * A plan given as {"ops": {...}, "layers": {...}} (a file's content, a
 * profile's kernels), on top of the default plan. Anything else (another
 * kind of JSON, unknown keys, values that are not variant names) is an
 * error naming `source`: a plan that silently meant the default would be
 * measured as if it were the one asked for.
 */
export function planFromJson(json: unknown, graph: ResNetGraph, backend: Backend = 'cpu', source = '--kernels: the plan', base?: Plan): Plan {
  const isRun = (v: unknown) => typeof v === 'object' && v !== null && (v as { format?: unknown }).format === 'stepscope-run';
  const runHint = ' (this is a saved run, not a plan: step --save-plan writes one)';
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UsageError(`${source} must be an object with "ops" and/or "layers"${Array.isArray(json) && json.some(isRun) ? runHint : ''}`);
  }
  const o = json as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => k !== 'ops' && k !== 'layers');
  if (unknown.length > 0) {
    const hint = isRun(o) ? runHint : '';
    const named = unknown.slice(0, 3).map((k) => `"${k}"`).join(', ') + (unknown.length > 3 ? ` and ${unknown.length - 3} more keys` : '');
    throw new UsageError(`${source} has ${named}; a plan holds only "ops" and "layers"${hint}`);
  }
  if (o.ops === undefined && o.layers === undefined) throw new UsageError(`${source} is empty: give "ops" and/or "layers"`);
  const entries = (key: 'ops' | 'layers'): [string, string][] => {
    const part = o[key];
    if (part === undefined) return [];
    if (typeof part !== 'object' || part === null || Array.isArray(part)) throw new UsageError(`${source}: "${key}" must be an object of name: variant`);
    return Object.entries(part).map(([name, variant]) => {
      if (typeof variant !== 'string') throw new UsageError(`${source}: ${key}.${name} is ${JSON.stringify(variant)}; a variant name (a string) is allowed`);
      return [name, variant];
    });
  };
  return applyPairs([...entries('ops'), ...entries('layers')], graph, backend, base);
}

function copyPlan(p: Plan): Plan {
  return { ops: { ...p.ops }, layers: { ...p.layers } };
}

// Over a base plan with layer entries of its own (a run's), an entry given
// here covers its whole scope: `conv=X` replaces the base's conv layer and
// pass entries, `layer=X` the base's pass entries of that layer; the more
// specific entries given here still apply on top.
function applyPairs(pairs: [string, string][], graph: ResNetGraph, backend: Backend, base?: Plan): Plan {
  const plan = base ? copyPlan(base) : defaultPlan(backend);
  const kindOf = new Map<string, NodeKind>(graph.nodes.map((n) => [n.name, n.kind]));
  const given = new Set<string>(); // layer keys set by these pairs (not the base's)
  const dropBase = (covers: (layerKey: string) => boolean) => {
    for (const k of Object.keys(plan.layers)) if (!given.has(k) && covers(k)) delete plan.layers[k];
  };
  for (const [key, variant] of pairs) {
    const [layer, pass, ...rest] = key.split('/');
    if (rest.length > 0) throw new UsageError(`--kernels: '${key}' is not a layer or layer/pass (e.g. res2a_branch2b/bwd-data)`);
    if (pass !== undefined) {
      // A convolution's pass: a variant that has that pass (cuDNN's algorithms differ per pass).
      if (kindOf.get(layer) !== 'conv' || !(PASS_NAMES as readonly string[]).includes(pass)) {
        throw new UsageError(`--kernels: '${key}' is not a convolution and pass (layer/pass, e.g. res2a_branch2b/bwd-data; passes ${PASS_NAMES.join(', ')})`);
      }
      checkVariant(`--kernels ${key}`, 'conv', variant, backend);
      const passes = backend === 'cuda' ? cudaAddonIfLoaded()?.convVariants().find((v) => v.name === variant)?.passes : undefined;
      if (passes && !passes.includes(pass as ConvPass)) throw new UsageError(`--kernels ${key}: variant '${variant}' has no ${pass} pass; it has ${passes.join(', ')}`);
      plan.layers[key] = variant;
      given.add(key);
      continue;
    }
    if ((PLAN_OPS as readonly string[]).includes(key)) {
      checkVariant(`--kernels ${key}`, key as PlanOp, variant, backend);
      plan.ops[key as PlanOp] = variant;
      dropBase((k) => kindOf.get(k.split('/')[0]) === key);
    } else if (kindOf.has(key)) {
      checkVariant(`--kernels ${key}`, kindOf.get(key)!, variant, backend);
      plan.layers[key] = variant;
      given.add(key);
      dropBase((k) => k.startsWith(`${key}/`));
    } else {
      throw new UsageError(
        `--kernels: '${key}' is neither an op (${PLAN_OPS.join(', ')}) nor a layer of this network (e.g. conv1, res2a_branch2b, bn2a_branch2a, pool1, res2a, fc${graph.classes})`,
      );
    }
  }
  checkConvPasses(plan, graph, backend);
  return plan;
}

/**
 * On CUDA a variant may lack passes (a cuDNN algorithm of one pass): every
 * conv layer's every pass must resolve to a variant that has it, checked
 * before any work (else the step would fail when it prepares that layer).
 */
function checkConvPasses(plan: Plan, graph: ResNetGraph, backend: Backend): void {
  if (backend !== 'cuda') return;
  const table = cudaAddonIfLoaded()?.convVariants();
  if (!table) return;
  const passesOf = new Map(table.map((v) => [v.name, v.passes]));
  const complete = new Set(table.filter((v) => PASS_NAMES.every((p) => v.passes.includes(p))).map((v) => v.name));
  const suggested = ['cudnn:heuristic', 'cudnn:autotune', 'im2col-cublas'].filter((v) => complete.has(v));
  for (const node of graph.nodes) {
    if (node.kind !== 'conv') continue;
    for (const pass of PASS_NAMES) {
      if (pass === 'bwd-data' && node.inputs[0] === graph.input) continue; // conv1: no gradient of the input runs
      const variant = variantFor(plan, 'conv', node.name, pass);
      const passes = passesOf.get(variant);
      if (!passes || passes.includes(pass)) continue;
      const key = plan.layers[node.name] === variant ? node.name : 'conv';
      throw new UsageError(
        `--kernels ${key}=${variant}: variant '${variant}' has no ${pass} pass (it has ${passes.join(', ')}), so ${node.name} ${pass} would have none; ` +
          `give that pass its own variant (${node.name}/${pass}=<variant>) or choose one with every pass${suggested.length ? ` (e.g. ${suggested.join(', ')})` : ''}`,
      );
    }
  }
}

/** The variant of an op (of a layer; of a conv layer's pass: a per-pass entry first). */
export function variantFor(plan: Plan, op: PlanOp, layer?: string, pass?: ConvPass): string {
  return (layer !== undefined && pass !== undefined ? plan.layers[`${layer}/${pass}`] : undefined) ?? (layer !== undefined ? plan.layers[layer] : undefined) ?? plan.ops[op];
}

/** The variants a conv layer runs, one per pass (differing only with per-pass entries). */
export function convVariantsOf(plan: Plan, layer: string): string[] {
  return [...new Set(PASS_NAMES.map((p) => variantFor(plan, 'conv', layer, p)))];
}
