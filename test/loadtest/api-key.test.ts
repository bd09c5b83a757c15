/** The load generator against a real server started with --api-key: it sends the key it is given. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runLoad } from '../../loadtest/load-generator.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { startTestServer } from '../server/helpers/server.ts';

const KEY = 'loadtest-api-key-0123456789';

describe('runLoad against a server that wants an API key', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ apiKeys: [KEY] })));
  after(async () => s.close());

  it('is answered 200 with the key and 401 without it', async () => {
    const common = { url: s.url, maxRequests: 3, durationSec: 20, maxTokens: 4, prompts: ['Once upon a time'] };
    const withKey = await runLoad({ ...common, apiKey: KEY });
    assert.equal(withKey.ok, 3);
    const without = await runLoad(common);
    assert.equal(without.ok, 0);
    assert.equal(without.failed, 3);
    assert.deepEqual(Object.keys(without.errors), ['http_401']);
  });
});
