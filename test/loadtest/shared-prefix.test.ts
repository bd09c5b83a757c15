import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runLoad } from '../../loadtest/load-generator.ts';
import { LoadConfigError, resolveLoadOptions } from '../../loadtest/options.ts';
import { buildRequestBody, sharedPrefix } from '../../loadtest/request-body.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { scrape, startTestServer } from '../server/helpers/server.ts';

const PROMPTS = ['Once upon a time', 'Tom and Sue went to the park', 'The dog'];

describe('load generator: shared-prefix traffic', () => {
  it('puts the same preamble of the asked length before every prompt, and none by default', () => {
    const plain = resolveLoadOptions({ url: 'http://127.0.0.1:1' });
    assert.equal(buildRequestBody(plain, PROMPTS, 1).prompt, PROMPTS[1]);
    const shared = resolveLoadOptions({ url: 'http://127.0.0.1:1', sharedPrefixWords: 50 });
    const prefix = sharedPrefix(50);
    assert.equal(prefix.split(' ').length, 50);
    assert.equal(sharedPrefix(0), '');
    for (let i = 0; i < 3; i++) assert.equal(buildRequestBody(shared, PROMPTS, i).prompt, prefix + PROMPTS[i]);
  });

  it('refuses a negative or fractional preamble length, naming the option', () => {
    assert.throws(() => resolveLoadOptions({ url: 'http://127.0.0.1:1', sharedPrefixWords: -1 }), LoadConfigError);
    assert.throws(() => resolveLoadOptions({ url: 'http://127.0.0.1:1', sharedPrefixWords: 1.5 }), /sharedPrefixWords/);
  });

  describe('against a server', () => {
    let s: RunningServer;
    before(async () => (s = await startTestServer({ maxBatch: 2 })));
    after(async () => s.close());

    it("moves the server's prefix-cache hit counter", async () => {
      const r = await runLoad({ url: s.url, prompts: PROMPTS, sharedPrefixWords: 60, maxRequests: 4, maxTokens: 2, durationSec: 60 });
      assert.equal(r.ok, 4);
      assert.equal(r.options.sharedPrefixWords, 60);
      const m = await scrape(s.url);
      assert.ok((m.get('mop_prefix_cache_hits_total{model="stories260K"}') ?? 0) >= 3 * 32, JSON.stringify([...m].filter(([k]) => k.includes('prefix'))));
    });
  });
});
