import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EngineResult, PeerModelResult, PeerRun } from '../../scripts/speedup/llamacpp-peer.ts';
import { prunedPeerRows, prunedPeerSection } from '../../scripts/speedup/peer-pruned.ts';

const engine = (best: number, median = best): EngineResult => ({
  best: { promptMs: 1, decodeMs: 1, decodeTokens: 1, promptTokensPerSec: 1, decodeTokensPerSec: best, medianStepMs: 1000 / best },
  medianDecodeTokensPerSec: median,
  medianPromptTokensPerSec: 1,
  reps: [],
});
const run = (threads: number, ours: number, llamacpp: number): PeerRun => ({ threads, ours: engine(ours), llamacpp: engine(llamacpp, llamacpp / 2), loadAvg: [0, 0] });
const result = (model: string, readBytes: number, runs: PeerRun[], extra: Partial<PeerModelResult> = {}): PeerModelResult => ({
  model,
  quant: 'q8_0',
  params: { total: 1, blocks: 1 },
  gguf: { path: `${model}.gguf`, bytes: readBytes, dtype: 'q8_0', readBytes },
  runs,
  error: null,
  ...extra,
});

test('the pruned rows set each pruned file beside the dense one of its run: decode-time ratios of both engines and the weights-read bound', () => {
  const dense = result('100m', 1000, [run(2, 50, 40), run(1, 30, 25)]);
  const pruned = result('100m-mop-40', 640, [run(2, 80, 62.5), run(1, 45, 40)], { prunedFrom: { model: '100m', target: 0.4 } });
  const rows = prunedPeerRows({ pruned: [{ dense, pruned }] });
  assert.deepEqual(
    rows.map((r) => [r.threads, r.bound, r.llamacpp?.best, r.llamacpp?.median, r.ours?.best]),
    [
      [2, 0.64, 0.64, 0.64, 0.625],
      [1, 0.64, 0.625, 0.625, 30 / 45],
    ],
  );
  const peer = { available: true, machine: { cores: 2 }, threads: [2, 1], models: [dense], pruned: [{ dense, pruned }] };
  const md = prunedPeerSection(peer as never).join('\n');
  assert.doesNotMatch(md, /busy/);
  assert.match(md, /\| 100m-mop-40 \| Q8_0 \| 2 \| 0\.640 \| 0\.640 \/ 0\.640 \| \+0\.000 \| 0\.625 \/ 0\.625 \| -0\.015 \|/);
  assert.deepEqual(prunedPeerSection({ available: true, models: [dense] } as never), [], 'no pruned variant, no section');
  pruned.runs[0]!.loadAvg = [1.2, 17.5];
  assert.match(prunedPeerSection(peer as never).join('\n'), /machine was busy \(load average 0\.0–17\.5 on 2 cores\).*do not judge the bound/);
});
