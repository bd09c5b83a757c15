import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server/main.ts';
import { postJson, scrape, startTestServer } from './helpers/server.ts';

describe('a server started with --dtype int8', () => {
  let s: RunningServer;
  before(async () => (s = await startTestServer({ dtype: 'int8', adminToken: 'q-token' })));
  after(async () => s.close());

  it('serves completions and says int8 where dashboards and operators look', async () => {
    const res = await postJson(s.url + '/v1/completions', { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
    assert.equal(res.status, 200);
    const metrics = await scrape(s.url);
    assert.equal(metrics.get('mop_model_info{device="cpu",dtype="int8",model="stories260K"}'), 1);
    const models = (await (await fetch(s.url + '/admin/models', { headers: { authorization: 'Bearer q-token' } })).json()) as { data: { dtype: string }[] };
    assert.equal(models.data[0]!.dtype, 'int8');
  });
});
