/**
 * bench:quality's "Uniform layers" section: MoP with recovery keeping per-layer widths against
 * `--uniform` (every kept layer the same heads and MLP width, with both sub-blocks), both measured
 * in the same run with the default recipe.
 */
import { f, pct, type QualityContext, type Row } from './quality-rows.ts';

/** The two variants of the section (rows of other sections never use these names). */
export const uniformVariants = { perLayer: 'per-layer', uniform: 'uniform' } as const;

/** "n × kv/ffn" for a uniform model's "L0:kv/ffn L1:kv/ffn …" layers. */
function shapeSummary(layers: string): string {
  const shapes = layers.split(' ').map((l) => l.split(':')[1]!);
  const distinct = [...new Set(shapes)];
  return distinct.length === 1 ? `${shapes.length} × ${distinct[0]}` : layers;
}

export function uniformLines(c: QualityContext, targets: readonly number[], planned: number): string[] {
  const { get, dense } = c;
  const pairs = [...targets]
    .sort((a, b) => a - b)
    .map((t) => [t, get(uniformVariants.perLayer, 'mop', t), get(uniformVariants.uniform, 'mop', t)] as const)
    .filter((p): p is readonly [number, Row, Row] => p[1] !== undefined && p[2] !== undefined);
  const out = ['## Uniform layers', ''];
  out.push(
    '`mop prune --uniform` keeps every kept layer the same heads and MLP width, with attention and MLP (depth is still chosen freely), so the Hugging Face output is a plain `LlamaConfig` with no `layer_shapes` key: transformers, vLLM and llama.cpp\'s converter load it. Its width steps take a slice: the least important KV group (or neuron) of every kept layer at once. Both columns are MoP with the default recovery recipe above, measured in the same run of this script (same calibration, recovery and held-out text); × dense is held-out perplexity over the dense model\'s.',
  );
  out.push('');
  out.push(`Ran ${pairs.length * 2} of ${planned} runs planned by this command for this section${pairs.length * 2 < planned ? ' (stopped early; the rest is not measured)' : ''}.`);
  out.push('');
  out.push('| target | per-layer + rec | × dense | uniform + rec | × dense | uniform vs per-layer | uniform layers (count × kv/ffn) | per-layer layers (source:kv/ffn) | path (per-layer / uniform) |');
  out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const [t, p, u] of pairs) {
    const rel = (u.perplexity / p.perplexity - 1) * 100;
    out.push(`| ${pct(t)} | ${f(p.perplexity)} | ${f(p.perplexity / dense.perplexity)} | ${f(u.perplexity)} | ${f(u.perplexity / dense.perplexity)} | ${rel >= 0 ? '+' : ''}${f(rel, 1)}% | ${shapeSummary(u.layers)} | ${p.layers} | ${p.path} / ${u.path} |`);
  }
  if (pairs.length) {
    const costs = pairs.map(([t, p, u]) => `${pct(t)} ${u.perplexity >= p.perplexity ? '+' : ''}${f((u.perplexity / p.perplexity - 1) * 100, 1)}%`);
    out.push('');
    out.push(`Held-out perplexity of uniform relative to per-layer widths: ${costs.join(', ')}. KL(dense ‖ model): ${pairs.map(([t, p, u]) => `${pct(t)} ${f(p.kl, 3)} → ${f(u.kl, 3)}`).join(', ')}.`);
  }
  return out;
}
