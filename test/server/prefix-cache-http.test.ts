import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { okJson, postJson, scrape, startTestServer, waitFor } from './helpers/server.ts';

const SYSTEM = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine with her dog and her big red ball. Every morning she ran to the park, and every evening she came home tired and happy.';
const PROMPTS = [' One day', ' Tom came to see her', ' Lily said'].map((s) => SYSTEM + s);
const MODEL = 'stories260K';

async function complete(url: string, prompt: string): Promise<string> {
  const body = await okJson<{ choices: { text: string }[] }>(postJson(`${url}/v1/completions`, { model: MODEL, prompt, max_tokens: 12, temperature: 0 }));
  return body.choices[0]!.text;
}

describe('prefix cache over HTTP', () => {
  let on: RunningServer;
  let off: RunningServer;
  const logs: string[] = [];
  before(async () => {
    on = await startTestServer({ maxBatch: 2 }, { log: (line) => logs.push(line) });
    off = await startTestServer({ maxBatch: 2, prefixCacheMb: 0 }, { log: (line) => logs.push(line) });
  });
  after(async () => {
    await on.close();
    await off.close();
  });

  it('counts prompt tokens queried and reused by later prompts with the same start, and answers as without the cache', async () => {
    const texts = [];
    for (const p of PROMPTS) texts.push(await complete(on.url, p));
    const expected = [];
    for (const p of PROMPTS) expected.push(await complete(off.url, p));
    assert.deepEqual(texts, expected);
    let m = await scrape(on.url);
    await waitFor(async () => ((m = await scrape(on.url)), (m.get(`mop_prefix_cache_hits_total{model="${MODEL}"}`) ?? 0) > 0), 5000, 'prefix cache hits');
    const hits = m.get(`mop_prefix_cache_hits_total{model="${MODEL}"}`)!;
    const queries = m.get(`mop_prefix_cache_queries_total{model="${MODEL}"}`)!;
    // The two later prompts each reused the whole 16-token blocks of the shared start.
    assert.ok(hits >= 2 * 32, `hits ${hits}`);
    assert.ok(queries > hits, `queries ${queries}, hits ${hits}`);
    const none = await scrape(off.url);
    assert.equal(none.has(`mop_prefix_cache_hits_total{model="${MODEL}"}`), false);
  });

  it('says at start-up whether the cache is on and within what budget', () => {
    assert.ok(logs.some((l) => /prefix cache: up to 256 MiB/.test(l)), logs.join('\n'));
    assert.ok(logs.some((l) => /prefix cache: off \(--prefix-cache-mb 0\)/.test(l)));
  });
});
