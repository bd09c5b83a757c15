import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { createOrtSession } from '../../src/runtime/device/ort-session.ts';
import { expectedWeightShapes, type ModelSpec } from '../../src/runtime/model/spec.ts';
import { syntheticSpec, syntheticWeights } from '../../src/runtime/model/synthetic.ts';
import type { Weights } from '../../src/runtime/model/tensor.ts';
import { RecoveryInputError } from '../../src/runtime/train/errors.ts';
import { initLoraAdapters, type LoraConfig, mergeLora } from '../../src/runtime/train/lora.ts';
import { ThreadedAdamW } from '../../src/runtime/train/threaded-adamw.ts';
import { defaultRecoveryOptions, recover, type RecoveryOptions, trainingRowsPerRun, validateRecoveryOptions } from '../../src/runtime/train/recover.ts';
import { BatchSampler } from '../../src/runtime/train/batch-sampler.ts';
import { SharedTeacher } from '../../src/runtime/train/shared-teacher.ts';
import { TeacherSession, TrainingSession } from '../../src/runtime/train/training-session.ts';
import type { TrainProgress } from '../../src/runtime/train/train-loop.ts';
import { buildTrainingGraph, trainingGraphIo } from '../../src/runtime/train/training-graph.ts';

/** A tiny pruned shape (an attention-free and an MLP-free layer) and learnable text: repeating arithmetic sequences. */
const spec: ModelSpec = syntheticSpec({
  vocabSize: 32,
  hidden: 16,
  maxContext: 64,
  layers: [
    { heads: 4, kvHeads: 2, headDim: 4, ffn: 32 },
    { heads: 0, kvHeads: 0, headDim: 4, ffn: 24 },
    { heads: 2, kvHeads: 1, headDim: 8, ffn: 0 },
  ],
});
const weights = syntheticWeights(spec, 11);
const windows = Array.from({ length: 12 }, (_, w) => Int32Array.from({ length: 17 }, (_, t) => (1 + w + t * (1 + (w % 3))) % 32));
const base: Partial<RecoveryOptions> = { steps: 30, lr: 1e-2, loss: 'ce', batch: 4, seqLen: 16, warmup: 3, threads: 1, seed: 3 };

const sameBits = (a: Weights, b: Weights) => [...a].every(([name, t]) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(b.get(name)!.data.buffer, b.get(name)!.data.byteOffset, b.get(name)!.data.byteLength)));

describe('recover: full fine-tuning and LoRA on a tiny pruned model', () => {
  it('full fine-tuning with cross-entropy lowers the loss (last 10 steps < 0.7 × first 10) and keeps the shape', async () => {
    const r = await recover({ spec, weights }, { ...base, kind: 'full' }, { windows });
    assert.equal(r.report.stopped, 'completed');
    assert.equal(r.report.updates, 30);
    assert.ok(r.report.finalLoss < 0.7 * r.report.firstLoss, `loss ${r.report.firstLoss} → ${r.report.finalLoss}`);
    for (const [name, shape] of expectedWeightShapes(spec)) assert.deepEqual(r.weights.get(name)!.shape, shape);
    assert.ok(!sameBits(r.weights, weights), 'weights changed');
    assert.ok(sameBits(syntheticWeights(spec, 11), weights), 'the input weights are not modified');
  });

  it('is bit-for-bit repeatable for a seed (1 and 2 threads), and a different seed gives different weights', async () => {
    for (const threads of [1, 2]) {
      const a = await recover({ spec, weights }, { ...base, steps: 8, kind: 'full', threads }, { windows });
      const b = await recover({ spec, weights }, { ...base, steps: 8, kind: 'full', threads }, { windows });
      assert.ok(sameBits(a.weights, b.weights), `two runs with ${threads} thread(s) differ`);
      assert.deepEqual(a.report.losses, b.report.losses);
    }
    const a = await recover({ spec, weights }, { ...base, steps: 8, kind: 'full' }, { windows });
    const c = await recover({ spec, weights }, { ...base, steps: 8, kind: 'full', seed: 4 }, { windows });
    assert.ok(!sameBits(a.weights, c.weights));
  });

  it('LoRA lowers the loss and changes only the targeted projections (merged, same shapes)', async () => {
    const r = await recover({ spec, weights }, { ...base, kind: 'lora', loraRank: 4, loraAlpha: 8, loraTargets: ['q', 'v', 'down'], lr: 3e-2 }, { windows });
    assert.ok(r.report.finalLoss < 0.8 * r.report.firstLoss, `loss ${r.report.firstLoss} → ${r.report.finalLoss}`);
    for (const [name, t] of r.weights) {
      const targeted = /q_proj|v_proj|down_proj/.test(name);
      assert.deepEqual(t.shape, weights.get(name)!.shape);
      assert.equal(sameBits(new Map([[name, t]]), weights), !targeted, `${name} ${targeted ? 'unchanged' : 'changed'}`);
    }
  });

  it('distillation moves the model toward the teacher: KL falls (last 10 steps < 0.6 × first 10)', async () => {
    const teacher = { spec, weights: syntheticWeights(spec, 12) };
    const r = await recover({ spec, weights }, { ...base, kind: 'full', loss: 'kd', kdAlpha: 1 }, { windows, teacher });
    assert.ok(r.report.finalLoss < 0.6 * r.report.firstLoss, `KL ${r.report.firstLoss} → ${r.report.finalLoss}`);
  });

  it('cached teacher targets: after one epoch no teacher pass runs, and the run equals one without the cache', async () => {
    const teacher = { spec, weights: syntheticWeights(spec, 12) };
    const options = { ...base, steps: 9, kind: 'full' as const, loss: 'kd' as const };
    const cached = await recover({ spec, weights }, options, { windows, teacher });
    const uncached = await recover({ spec, weights }, { ...options, teacherCacheMiB: 0 }, { windows, teacher });
    assert.equal(uncached.report.teacherPasses, 9);
    assert.ok(cached.report.teacherPasses! <= 4, `${cached.report.teacherPasses} passes for 12 windows in batches of 4`);
    assert.deepEqual(cached.report.losses, uncached.report.losses);
  });

  it('a teacher shared by the runs of one prune builds one session and computes each window once for all of them; a run equals one with its own teacher', async () => {
    const teacher = { spec, weights: syntheticWeights(spec, 12) };
    const shared = new SharedTeacher(teacher);
    const options = { ...base, steps: 9, kind: 'full' as const, loss: 'kd' as const };
    try {
      const first = await recover({ spec, weights }, options, { windows, sharedTeacher: shared });
      const second = await recover({ spec, weights: syntheticWeights(spec, 13) }, { ...options, seed: 4 }, { windows, sharedTeacher: shared });
      const own = await recover({ spec, weights: syntheticWeights(spec, 13) }, { ...options, seed: 4 }, { windows, teacher });
      assert.equal(shared.sessionsBuilt, 1);
      assert.ok(first.report.teacherPasses! > 0);
      // 9 steps of 4 rows went over all 12 windows in the first run: the second needs no teacher pass.
      assert.equal(second.report.teacherPasses, 0);
      assert.ok(own.report.teacherPasses! > 0);
      assert.deepEqual(second.report.losses, own.report.losses);
      assert.ok(sameBits(second.weights, own.weights));
    } finally {
      await shared.release();
    }
  });

  it('a non-finite loss stops the run and returns the weights of the last finite step (lr 1e30: step 2 overflows)', async () => {
    const r = await recover({ spec, weights }, { ...base, kind: 'full', lr: 1e30, warmup: 0, clip: 0 }, { windows });
    assert.equal(r.report.stopped, 'non-finite');
    assert.equal(r.report.nonFiniteStep, 2);
    assert.equal(r.report.updates, 0);
    assert.ok(sameBits(r.weights, weights), 'the weights step 1 ran with');
  });

  it('AdamW in two worker threads trains to the same weights and losses bit for bit as in this thread (full and LoRA, clipped), and restores the same weights after a non-finite step', async () => {
    const threaded = { optimizer: (p: Parameters<typeof ThreadedAdamW.start>[0], weightDecay: number) => ThreadedAdamW.start(p, { weightDecay }, 2) };
    for (const o of [
      { ...base, kind: 'full' as const, steps: 6, clip: 0.5, weightDecay: 0.1 },
      { ...base, kind: 'lora' as const, steps: 6, clip: 0.5 },
      { ...base, kind: 'full' as const, lr: 1e30, warmup: 0, clip: 0 },
    ]) {
      const here = await recover({ spec, weights }, o, { windows });
      const there = await recover({ spec, weights }, o, { windows }, threaded);
      assert.deepEqual(there.report.losses, here.report.losses, o.kind);
      assert.equal(there.report.updates, here.report.updates);
      assert.ok(sameBits(there.weights, here.weights), `${o.kind} lr ${o.lr}: weights differ`);
    }
  });

  it('an abort between steps rejects with the signal’s AbortError after the steps already reported', async () => {
    const controller = new AbortController();
    const seen: TrainProgress[] = [];
    const run = recover({ spec, weights }, { ...base, kind: 'full' }, { windows }, {
      signal: controller.signal,
      onProgress: (p) => {
        seen.push(p);
        if (p.step === 2) controller.abort();
      },
    });
    await assert.rejects(run, { name: 'AbortError' });
    assert.deepEqual(seen.map((p) => p.step), [1, 2]);
    assert.ok(seen.every((p) => p.tokensPerSecond > 0 && p.steps === 30 && p.etaSeconds >= 0 && p.lr > 0));
  });

  it('a seconds budget trains while one more step fits, reports the steps it ran, and decays the learning rate over the time', async () => {
    const progress: TrainProgress[] = [];
    const r = await recover({ spec, weights }, { ...base, kind: 'full', steps: 1_000_000, warmup: 66_667, seconds: 1.5 }, { windows }, { onProgress: (p) => progress.push(p) });
    assert.equal(r.report.stopped, 'completed');
    assert.ok(r.report.updates >= 2 && r.report.updates < 1_000_000, `${r.report.updates} updates`);
    const perStep = r.report.seconds / r.report.updates;
    assert.ok(r.report.seconds <= 1.5 + 2 * perStep + 0.05, `${r.report.seconds} s for a 1.5 s budget`);
    assert.ok(r.report.seconds >= 1.5 - 3 * perStep - 0.05, `stopped early: ${r.report.seconds} s`);
    // The learning rate warms up over the first 1/15 of the time, then decays: it ends far below its peak.
    const lrs = progress.map((p) => p.lr);
    const peak = Math.max(...lrs);
    assert.ok(peak <= 1e-2 + 1e-12 && lrs.at(-1)! < 0.5 * peak, `peak ${peak}, last ${lrs.at(-1)}`);
    // The estimated total is the steps done plus those that still fit; at the end it is what ran.
    assert.equal(progress.at(-1)!.step, r.report.updates);
    assert.ok(Math.abs(progress.at(-1)!.steps - r.report.updates) <= 1);
  });

  it('0 steps returns the weights unchanged', async () => {
    const r = await recover({ spec, weights }, { ...base, steps: 0, kind: 'lora' }, { windows });
    assert.ok(sameBits(r.weights, weights));
  });
});

describe('LoRA merge', () => {
  it('the merged model computes the same loss as base + adapters (W + (α/r)·B·A), to 1e-5', async () => {
    const config: LoraConfig = { rank: 3, alpha: 5, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] };
    const adapters = initLoraAdapters(spec, config, 1);
    for (const [name, t] of adapters) if (name.endsWith('.B')) t.data.forEach((_, i) => (t.data[i] = Math.sin(i + name.length) * 0.3));
    const loss = async (w: Weights, lora?: LoraConfig) => {
      const graph = buildTrainingGraph(spec, w, { seqLen: 16, loss: 'ce', gradients: false, ...(lora && { lora }) });
      const session = await createOrtSession(graph.model, 'cpu', { threads: 1 });
      const feeds: Record<string, ort.Tensor> = {
        [trainingGraphIo.inputIds]: new ort.Tensor('int64', BigInt64Array.from(windows[0]!.slice(0, 16), BigInt), [1, 16]),
        [trainingGraphIo.targets]: new ort.Tensor('int64', BigInt64Array.from(windows[0]!.slice(1), BigInt), [1, 16]),
        [trainingGraphIo.lossWeights]: new ort.Tensor('float32', new Float32Array(16).fill(1), [1, 16]),
      };
      for (const t of graph.trainable) feeds[t.name] = new ort.Tensor('float32', adapters.get(t.name)!.data, t.shape);
      const out = await session.run(feeds, [trainingGraphIo.loss]);
      await session.release();
      return (out[trainingGraphIo.loss]!.data as Float32Array)[0]!;
    };
    const withAdapters = await loss(weights, config);
    const merged = await loss(mergeLora(spec, weights, adapters, config));
    const plain = await loss(weights);
    assert.ok(Math.abs(withAdapters - merged) <= 1e-5 * withAdapters, `${withAdapters} vs merged ${merged}`);
    assert.ok(Math.abs(withAdapters - plain) > 1e-3, 'the adapters matter');
  });
});

describe('bad recovery options: one-line RecoveryInputError', () => {
  const cases: [string, Partial<RecoveryOptions>, RegExp][] = [
    ['lr 0', { lr: 0 }, /learning rate must be a positive finite number, got 0/],
    ['lr negative', { lr: -1 }, /learning rate/],
    ['lr NaN', { lr: NaN }, /learning rate .* got NaN/],
    ['lr Infinity', { lr: Infinity }, /learning rate .* got Infinity/],
    ['steps −1', { steps: -1 }, /steps must be a non-negative integer, got -1/],
    ['steps 1.5', { steps: 1.5 }, /steps/],
    ['seconds 0', { seconds: 0 }, /recovery seconds must be a positive number, got 0/],
    ['seconds NaN', { seconds: NaN }, /recovery seconds must be a positive number, got NaN/],
    ['rows per run 0', { rowsPerRun: 0 }, /rows per run must be a positive integer, got 0/],
    ['unknown kind', { kind: 'qlora' as never }, /unknown recovery kind 'qlora'/],
    ['unknown loss', { loss: 'mse' as never }, /unknown recovery loss 'mse'/],
    ['LoRA rank 0', { kind: 'lora', loraRank: 0 }, /LoRA rank must be a positive integer, got 0/],
    ['LoRA rank above the narrowest adapted width (layer 2 k_proj: 1 KV head × 8)', { kind: 'lora', loraRank: 9 }, /LoRA rank 9 exceeds the narrowest adapted layer width \(8\)/],
    ['LoRA alpha 0', { kind: 'lora', loraAlpha: 0 }, /LoRA alpha must be a positive finite number, got 0/],
    ['unknown LoRA target', { kind: 'lora', loraTargets: ['qkv' as never] }, /unknown LoRA target 'qkv'/],
    ['kdAlpha 2', { kdAlpha: 2 }, /kdAlpha must be in \[0, 1\]/],
    ['negative teacher cache', { teacherCacheMiB: -1 }, /teacher cache must be a non-negative number of MiB, got -1/],
    ['seqLen beyond the context', { seqLen: 65 }, /exceeds the model's context of 64/],
  ];
  for (const [what, bad, message] of cases) {
    it(what, () => {
      assert.throws(
        () => validateRecoveryOptions({ ...defaultRecoveryOptions, seqLen: 16, ...bad }, spec),
        (e: unknown) => e instanceof RecoveryInputError && message.test(e.message) && !e.message.includes('\n'),
      );
    });
  }
  it('recover rejects distillation without a teacher, and empty data', async () => {
    await assert.rejects(recover({ spec, weights }, { ...base, loss: 'kd' }, { windows }), /needs a teacher model/);
    await assert.rejects(recover({ spec, weights }, base, { windows: [] }), /no token windows/);
  });
  it('the defaults are valid', () => validateRecoveryOptions({ ...defaultRecoveryOptions, seqLen: 16 }, spec));
});

describe('a training step in pieces (rows per ONNX Runtime run)', () => {
  const rel = (a: Float32Array, b: Float32Array) => {
    let num = 0;
    let den = 0;
    for (let i = 0; i < a.length; i++) {
      num += (a[i]! - b[i]!) ** 2;
      den += b[i]! ** 2;
    }
    return Math.sqrt(num / Math.max(den, 1e-30));
  };

  it('gives the whole batch\'s loss and gradients (pieces weighted by their tokens), for ce and kd', async () => {
    const params = new Map([...expectedWeightShapes(spec)].map(([name]) => [name, weights.get(name)!.data]));
    // Windows of different lengths: pieces carry different token counts, so the weighting matters.
    const ragged = windows.map((w, i) => w.subarray(0, 9 + (i % 8)));
    for (const loss of ['ce', 'kd'] as const) {
      const session = await TrainingSession.create(spec, weights, { seqLen: 16, loss }, 1);
      const teacherSession = loss === 'kd' ? await TeacherSession.create(spec, syntheticWeights(spec, 12), 16, 1) : undefined;
      try {
        const batch = new BatchSampler(ragged, 5, 16, 1).next();
        const teacher = teacherSession && { logProbs: await teacherSession.logProbs(batch), alpha: 0.75 };
        const pieceTeacher = teacherSession && { logProbs: await teacherSession.logProbs(batch, { rowsPerRun: 2 }), alpha: 0.75 };
        if (teacher) assert.ok(rel(pieceTeacher!.logProbs, teacher.logProbs) < 1e-6, 'teacher log-probabilities in pieces');
        const whole = await session.run(batch, params, teacher);
        const pieces = await session.run(batch, params, pieceTeacher, { rowsPerRun: 2 });
        assert.ok(Math.abs(pieces.loss - whole.loss) < 1e-5 * Math.abs(whole.loss), `${loss}: loss ${pieces.loss} vs ${whole.loss}`);
        for (const [name, g] of whole.grads) assert.ok(rel(pieces.grads.get(name)!, g) < 1e-5, `${loss}: gradient of ${name}`);
      } finally {
        await session.release();
        await teacherSession?.release();
      }
    }
  });

  it('sees a cancel between pieces, before the step ends', async () => {
    const params = new Map([...expectedWeightShapes(spec)].map(([name]) => [name, weights.get(name)!.data]));
    const session = await TrainingSession.create(spec, weights, { seqLen: 16, loss: 'ce' }, 1);
    try {
      const ac = new AbortController();
      ac.abort();
      await assert.rejects(session.run(new BatchSampler(windows, 4, 16, 1).next(), params, undefined, { rowsPerRun: 1, signal: ac.signal }), { name: 'AbortError' });
    } finally {
      await session.release();
    }
  });

  it('runs a 100M-parameter shape 512 tokens at a time and a small model whole (about 4 GFLOP a run, 512 tokens at least)', () => {
    const spec100m = syntheticSpec({ vocabSize: 32000, hidden: 768, layers: 12, heads: 12, kvHeads: 4, ffn: 2048, tiedEmbeddings: true });
    assert.equal(trainingRowsPerRun(spec100m, 128, 16), 4);
    assert.equal(trainingRowsPerRun(spec100m, 1024, 16), 1);
    assert.equal(trainingRowsPerRun(spec100m, 128, 2), 2);
    assert.equal(trainingRowsPerRun(spec, 16, 16), 16);
  });
});
