/**
 * The dense model's weights are held once: the engine serves from a shared copy, and nothing keeps
 * the loader's own float arrays alive after start-up. Checked by reachability: weak references to
 * the loader's arrays must clear under a forced garbage collection while the server still serves.
 */
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import { after, before, describe, it } from 'node:test';
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { postJson, startTestServer } from '../server/helpers/server.ts';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Weak references to every float array of a model loaded here, and to its weights map. */
interface LoaderRefs {
  arrays: WeakRef<Float32Array>[];
  map: WeakRef<object>;
}

/** Loads the bundled model and starts a server from it; only weak references to its weights survive this call. */
async function startFromLoadedModel(): Promise<{ server: RunningServer; refs: LoaderRefs }> {
  const model = await loadModel(defaultModelPath());
  const refs: LoaderRefs = { arrays: [...model.weights.values()].map((t) => new WeakRef(t.data)), map: new WeakRef(model.weights) };
  assert.ok(refs.arrays.length > 0);
  assert.ok(refs.arrays.every((r) => !(r.deref()!.buffer instanceof SharedArrayBuffer)), 'the loader returns ordinary arrays');
  const server = await startTestServer({ maxBatch: 2 }, { model });
  return { server, refs };
}

async function collectGarbage(): Promise<void> {
  // A weak reference's target survives the job that created or read it: collect across turns.
  for (let i = 0; i < 6; i++) {
    await nextTurn();
    gc();
  }
}

describe("the dense model's weights", () => {
  let server: RunningServer;
  let refs: LoaderRefs;
  before(async () => ({ server, refs } = await startFromLoadedModel()));
  after(async () => server?.close());

  it("are not kept twice: the loader's arrays are collected while the server serves from the shared copy", async () => {
    const ask = async () => {
      const res = await postJson(`${server.url}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 4, temperature: 0 });
      const text = await res.text();
      assert.equal(res.status, 200, text);
      return (JSON.parse(text) as { choices: { text: string }[] }).choices[0]!.text;
    };
    const before = await ask();
    await collectGarbage();
    assert.equal(refs.map.deref(), undefined, "the loader's weights map is still reachable");
    const alive = refs.arrays.filter((r) => r.deref() !== undefined).length;
    assert.equal(alive, 0, `${alive} of ${refs.arrays.length} loader arrays are still reachable`);
    assert.equal(await ask(), before, 'the server serves the same text from the shared copy');
  });
});
