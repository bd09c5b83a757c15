/**
 * The main thread's Scheduler over an engine worker: it refuses what BatchScheduler refuses, and
 * synchronously; its events, aborts, drain and release work across the thread boundary; weights
 * reach the worker without a copy.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ContextLengthError, InvalidRequestError } from '../../src/runtime/engine/errors.ts';
import { defaultSamplingParams } from '../../src/runtime/engine/sampling-params.ts';
import { QueueFullError, SchedulerClosedError } from '../../src/runtime/engine/scheduler-types.ts';
import type { GenerationEvent } from '../../src/runtime/engine/sequence.ts';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import type { LoadedModel } from '../../src/runtime/model/loaded-model.ts';
import { shareWeights } from '../../src/runtime/model/shared-weights.ts';
import { EngineClient } from '../../src/service/variants/engine-client.ts';

const greedy = defaultSamplingParams({ temperature: 0 });

/** The finish reason that ends a request's events. */
function reasonOf(events: GenerationEvent[]): string | undefined {
  const last = events.at(-1);
  return last?.type === 'finish' ? last.reason : undefined;
}

async function collect(events: AsyncIterable<GenerationEvent>): Promise<GenerationEvent[]> {
  const out: GenerationEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}

describe('shareWeights', () => {
  it('puts every tensor in shared memory once and keeps tensors that already are', async () => {
    const model = await loadModel(defaultModelPath());
    const shared = shareWeights(model.weights);
    for (const [name, t] of shared) {
      assert.ok(t.data.buffer instanceof SharedArrayBuffer, name);
      assert.deepEqual(t.data, model.weights.get(name)!.data, name);
    }
    const again = shareWeights(shared);
    for (const [name, t] of again) assert.equal(t.data, shared.get(name)!.data, `${name} is not copied again`);
  });
});

describe('EngineClient', () => {
  let model: LoadedModel;
  let engine: EngineClient;
  before(async () => {
    model = await loadModel(defaultModelPath());
    engine = await EngineClient.start({
      variant: 'test',
      spec: model.spec,
      weights: shareWeights(model.weights),
      tokenizer: model.tokenizer,
      session: { maxBatch: 1, maxContext: 64, target: { device: 'cpu', dtype: 'float32' }, threads: 1 },
      scheduling: { maxQueue: 1, prefillChunk: 64, requestTimeoutMs: 0 },
    });
  });
  after(async () => engine.release());

  it('runs in another thread and generates what the model generates', async () => {
    assert.notEqual(engine.threadId, 0);
    const events = await collect(engine.submit({ promptTokens: [1, 403, 407], maxTokens: 4, sampling: greedy, ignoreEos: true }).events);
    assert.equal(events.filter((e) => e.type === 'token').length, 4);
    assert.deepEqual(events.at(-1), { type: 'finish', reason: 'length', text: '', promptTokens: 3, completionTokens: 4 });
  });

  it('refuses bad requests synchronously, as BatchScheduler does', () => {
    assert.throws(() => engine.submit({ promptTokens: [], maxTokens: 1, sampling: greedy }), InvalidRequestError);
    assert.throws(() => engine.submit({ promptTokens: Array(64).fill(5), maxTokens: 1, sampling: greedy }), ContextLengthError);
    assert.throws(() => engine.submit({ promptTokens: [1], maxTokens: 0, sampling: greedy }), InvalidRequestError);
    assert.throws(() => engine.submit({ promptTokens: [1], maxTokens: 1, sampling: { ...greedy, topP: 2 } }), /topP/);
  });

  it('answers QueueFullError once the slots and the queue are taken, and frees them on abort', async () => {
    const ac = new AbortController();
    const running = engine.submit({ promptTokens: [1], maxTokens: 60, sampling: greedy, ignoreEos: true, signal: ac.signal });
    const waiting = engine.submit({ promptTokens: [1], maxTokens: 60, sampling: greedy, ignoreEos: true, signal: ac.signal });
    assert.throws(() => engine.submit({ promptTokens: [1], maxTokens: 1, sampling: greedy }), QueueFullError);
    ac.abort();
    const [a, b] = await Promise.all([collect(running.events), collect(waiting.events)]);
    assert.equal(reasonOf(a), 'abort');
    assert.equal(reasonOf(b), 'abort');
    const next = await collect(engine.submit({ promptTokens: [1], maxTokens: 1, sampling: greedy, ignoreEos: true }).events);
    assert.equal(next.at(-1)!.type, 'finish');
  });

  it('reports when a request was admitted, on the main thread clock', async () => {
    const t0 = performance.now();
    const handle = engine.submit({ promptTokens: [1], maxTokens: 2, sampling: greedy, ignoreEos: true });
    await collect(handle.events);
    assert.ok(handle.admittedAt !== undefined && handle.admittedAt >= t0 - 1 && handle.admittedAt <= performance.now(), `admittedAt ${handle.admittedAt}`);
  });

  it('drains: finishes what runs, then refuses new work', async () => {
    const handle = engine.submit({ promptTokens: [1], maxTokens: 8, sampling: greedy, ignoreEos: true });
    await engine.drain(10_000);
    const events = await collect(handle.events);
    assert.equal(reasonOf(events), 'length');
    assert.throws(() => engine.submit({ promptTokens: [1], maxTokens: 1, sampling: greedy }), SchedulerClosedError);
  });
});
