import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { hostAllowed, hostName, hostPolicy, refusalLog } from '../../src/server/host-check.ts';
import type { RunningServer } from '../../src/server/main.ts';
import { scrape, startTestServer } from './helpers/server.ts';

/** A request as a browser on a rebound name sends it: the URL's address, the name in Host. */
async function post(s: RunningServer, path: string, host: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await request(s.url + path, { method: 'POST', headers: { host, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.statusCode, body: (await res.body.json()) as { error?: { code: string; message: string; type: string } } };
}

const port = (s: RunningServer) => new URL(s.url).port;
const COMPLETION = { prompt: 'Once upon a time', max_tokens: 2 };

describe('Host check: a loopback server without an API key answers only IP addresses and loopback names (DNS rebinding)', () => {
  let s: RunningServer;
  const lines: string[] = [];
  const ADMIN = 'host-check-admin-token-0123456789';
  before(async () => (s = await startTestServer({ adminToken: ADMIN }, { log: (line) => lines.push(line) })));
  after(() => s.close());

  it('says at start-up that the check is on', () => {
    assert.ok(lines.some((l) => /^host check: on \(only IP addresses, loopback names are answered/.test(l)), lines.join('\n'));
  });

  it('refuses a request addressed by another name with a 403 naming the option, counted as forbidden, and answers the same request addressed by IP or localhost', async () => {
    const refused = await post(s, '/v1/completions', `rebind.attacker.example:${port(s)}`, COMPLETION);
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error!.code, 'host_not_allowed');
    assert.equal(refused.body.error!.type, 'permission_error');
    assert.match(refused.body.error!.message, /'rebind\.attacker\.example:\d+' are refused: .*--allowed-hosts \/ MOP_ALLOWED_HOSTS/);
    for (const host of [`127.0.0.1:${port(s)}`, `localhost:${port(s)}`, `LocalHost.:${port(s)}`, `[::1]:${port(s)}`, `10.1.2.3:${port(s)}`]) {
      assert.equal((await post(s, '/v1/completions', host, COMPLETION)).status, 200, host);
    }
    const tokenize = await post(s, '/tokenize', 'rebind.attacker.example', { prompt: 'hi' });
    assert.equal(tokenize.status, 403);
    const m = await scrape(s.url);
    assert.equal(m.get('mop_requests_total{model="unknown",outcome="forbidden"}'), 1);
    assert.equal(m.get('mop_tokenize_requests_total{model="unknown",outcome="forbidden",route="tokenize"}'), 1);
    // Logged once, not once per refusal (a probing page cannot flood the log).
    assert.deepEqual(lines.filter((l) => l.startsWith('host check: refused')), [
      "host check: refused 1 request(s) addressed to names this server does not answer to (last: 'rebind.attacker.example:" + port(s) + "' on /v1/completions); a proxy's name belongs in --allowed-hosts",
    ]);
  });

  it('refuses the /admin/events WebSocket upgrade addressed by another name, even with the admin token', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(s.url.replace('http', 'ws') + '/admin/events', { headers: { authorization: `Bearer ${ADMIN}`, host: 'rebind.attacker.example' } });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => (ws.close(), resolve(101)));
      ws.on('error', reject);
    });
    assert.equal(status, 403);
  });

  it('refuses every path, health and metrics included, to a name it does not answer to', async () => {
    for (const path of ['/health', '/ready', '/metrics', '/v1/models']) {
      const res = await request(s.url + path, { headers: { host: 'rebind.attacker.example' } });
      assert.equal(res.statusCode, 403, path);
      await res.body.dump();
    }
  });
});

describe('Host check: names given to --allowed-hosts; off with an API key or on all interfaces', () => {
  let listed: RunningServer;
  let keyed: RunningServer;
  const KEY = 'host-check-test-key-0123456789';
  before(async () => {
    listed = await startTestServer({ allowedHosts: ['proxy.internal'] });
    keyed = await startTestServer({ apiKeys: [KEY] });
  });
  after(async () => {
    await listed.close();
    await keyed.close();
  });

  it('answers a listed name and still refuses others', async () => {
    assert.equal((await post(listed, '/v1/completions', 'proxy.internal:8000', COMPLETION)).status, 200);
    assert.equal((await post(listed, '/v1/completions', 'other.internal', COMPLETION)).status, 403);
  });

  it('with an API key any name passes the host check (the page has no key: a 401, not a 403)', async () => {
    assert.equal((await post(keyed, '/v1/completions', 'rebind.attacker.example', COMPLETION)).status, 401);
    assert.equal((await post(keyed, '/v1/completions', 'rebind.attacker.example', COMPLETION, { authorization: `Bearer ${KEY}` })).status, 200);
  });
});

describe('hostPolicy, hostName, hostAllowed', () => {
  it('checks on a loopback listener without keys, with --allowed-hosts anywhere, never with *', () => {
    assert.equal(hostPolicy('127.0.0.1', undefined, undefined).check, true);
    assert.equal(hostPolicy('localhost', undefined, []).check, true);
    assert.equal(hostPolicy('::1', undefined, undefined).check, true);
    assert.equal(hostPolicy('0.0.0.0', undefined, undefined).check, false);
    assert.equal(hostPolicy('127.0.0.1', undefined, ['k'.repeat(16)]).check, false);
    assert.equal(hostPolicy('0.0.0.0', ['api.example.com'], undefined).check, true);
    assert.equal(hostPolicy('127.0.0.1', ['*'], undefined).check, false);
  });
  it('logs the first refusal at once, then at most a line a minute with the count since', () => {
    const lines: string[] = [];
    let t = 0;
    const log = refusalLog((l) => lines.push(l), 60_000, () => t);
    log('/v1/completions', 'a.example');
    t = 30_000;
    log('/health', 'b.example');
    log('/health', 'c.example');
    t = 61_000;
    log('/metrics', 'd.example');
    assert.equal(lines.length, 2);
    assert.match(lines[1]!, /^host check: refused 3 request\(s\) .*last: 'd\.example' on \/metrics/);
  });

  it('reads the name out of a Host value and refuses malformed ones', () => {
    assert.equal(hostName('Example.COM.:8080'), 'example.com');
    assert.equal(hostName('[::1]:80'), '::1');
    assert.equal(hostName('[::1]x'), undefined);
    assert.equal(hostName('a b'), undefined);
    assert.equal(hostName('user@evil.example'), undefined);
    const policy = hostPolicy('127.0.0.1', undefined, undefined);
    assert.equal(hostAllowed('evil.example', policy), false);
    assert.equal(hostAllowed('localhost.evil.example', policy), false);
    assert.equal(hostAllowed('app.localhost:3000', policy), true);
    assert.equal(hostAllowed('127.9.9.9', policy), true);
    assert.equal(hostAllowed(undefined, policy), true, 'HTTP/1.0 without a Host: not from a browser');
  });
});
