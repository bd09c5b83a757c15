import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { ConfigError, configKnobs, defaultServerConfig, formatConfig, modelNameFromPath, resolveConfig } from '../../src/server/config.ts';
import { configFromEnv } from './helpers/config-from-env.ts';

const MOP = fileURLToPath(new URL('../../src/cli/mop.ts', import.meta.url));

describe('server configuration', () => {
  it('has the documented defaults', () => {
    assert.equal(defaultServerConfig.port, 8000);
    assert.equal(defaultServerConfig.host, '0.0.0.0');
    assert.equal(defaultServerConfig.maxBatch, 8);
    assert.equal(defaultServerConfig.maxQueue, 64);
    assert.equal(defaultServerConfig.maxTokensDefault, 16);
    assert.deepEqual(resolveConfig({}), defaultServerConfig);
  });

  it('reads PORT and HOST, and MOP_* for everything else', () => {
    const envs = configKnobs.map((k) => k.env);
    assert.ok(envs.includes('PORT') && envs.includes('HOST'));
    assert.ok(envs.filter((e) => e !== 'PORT' && e !== 'HOST').every((e) => e.startsWith('MOP_')));
    const c = configFromEnv({ PORT: '9001', HOST: '127.0.0.1', MOP_MAX_BATCH: '4', MOP_CONTEXT: '256', MOP_SERVED_MODEL_NAME: 'tiny', MOP_ADMIN_TOKEN: 's3cret-admin-token-0123' });
    assert.equal(c.port, 9001);
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.maxBatch, 4);
    assert.equal(c.context, 256);
    assert.equal(c.servedModelName, 'tiny');
    assert.equal(c.adminToken, 's3cret-admin-token-0123');
  });

  it('maps every flag to its config key the way commander camel-cases it', () => {
    for (const k of configKnobs) {
      const long = /--([a-z-]+)/.exec(k.flag)![1]!;
      assert.equal(long.replace(/-([a-z])/g, (_, ch: string) => ch.toUpperCase()), k.key);
    }
  });

  it('rejects a bad value with one line naming the flag and the variable', () => {
    assert.throws(() => configFromEnv({ MOP_MAX_BATCH: 'lots' }), (e: Error) => e instanceof ConfigError && e.message === "--max-batch / MOP_MAX_BATCH: expected an integer in [1, 1024], got 'lots'");
    assert.throws(() => resolveConfig({ port: '70000' }), /--port \/ PORT/);
    assert.throws(() => resolveConfig({ maxQueue: '0' }), /--max-queue \/ MOP_MAX_QUEUE/);
    assert.throws(() => configFromEnv({ MOP_STREAM_STALL_MS: '-1' }), /--stream-stall-ms \/ MOP_STREAM_STALL_MS: expected an integer/);
    assert.equal(configFromEnv({ MOP_STREAM_STALL_MS: '0' }).streamStallMs, 0);
    assert.throws(() => resolveConfig({ model: '' }), /--model \/ MOP_MODEL/);
    assert.throws(() => resolveConfig({ device: 'tpu' }), /--device \/ MOP_DEVICE: unknown device 'tpu'; choose one of: auto, cpu, cuda, webgpu, cuda-native/);
    assert.throws(() => resolveConfig({ dtype: 'int3' }), /--dtype \/ MOP_DTYPE: unknown dtype 'int3'; choose one of: auto, float32, float16/);
    assert.equal(resolveConfig({ device: 'WebGPU', dtype: 'fp16' }).device, 'webgpu');
    assert.equal(resolveConfig({ dtype: 'fp16' }).dtype, 'float16');
    assert.throws(() => resolveConfig({ pruneTarget: '0' }), /--prune-target \/ MOP_PRUNE_TARGET: expected a fraction in \(0, 0\.9\]/);
    assert.throws(() => resolveConfig({ pruneTarget: 'lots' }), /--prune-target \/ MOP_PRUNE_TARGET/);
    assert.throws(() => resolveConfig({ pruneStrategy: 'random' }), /--prune-strategy \/ MOP_PRUNE_STRATEGY: unknown strategy 'random'; choose one of: mop, depth, width/);
    assert.equal(resolveConfig({ pruneTarget: '0.4', device: 'auto' }).pruneTarget, 0.4);
  });

  it('refuses short secrets, malformed key and origin lists and out-of-range trust limits, naming the flag and the variable', () => {
    assert.throws(() => resolveConfig({ adminToken: 'short' }), /--admin-token \/ MOP_ADMIN_TOKEN: expected at least 16 characters \(got 5\); generate one with: openssl rand -hex 32/);
    assert.throws(() => resolveConfig({ apiKey: 'k-0123456789abcdef,short' }), /--api-key \/ MOP_API_KEY: expected at least 16 characters \(got 5\)/);
    assert.throws(() => resolveConfig({ apiKey: 'k-0123456789abcdef,,k-0123456789abcdeg' }), /--api-key \/ MOP_API_KEY: expected a comma-separated list of non-empty values/);
    assert.throws(() => resolveConfig({ allowedOrigins: 'https://app.example.com/path' }), /--allowed-origins \/ MOP_ALLOWED_ORIGINS: expected '\*' or origins like https:\/\/app\.example\.com \(scheme and host, no path\), got 'https:\/\/app\.example\.com\/path'/);
    assert.throws(() => resolveConfig({ allowedHosts: 'http://api.example.com' }), /--allowed-hosts \/ MOP_ALLOWED_HOSTS: expected '\*' or host names like api\.example\.com \(no scheme, port or path\), got 'http:\/\/api\.example\.com'/);
    assert.throws(() => resolveConfig({ allowedHosts: 'api.example.com:8000' }), /--allowed-hosts \/ MOP_ALLOWED_HOSTS: expected '\*' or host names/);
    assert.deepEqual(resolveConfig({ allowedHosts: 'api.example.com,proxy.internal,mop_api' }).allowedHosts, ['api.example.com', 'proxy.internal', 'mop_api']);
    assert.throws(() => resolveConfig({ engineStallMs: '50' }), /--engine-stall-ms \/ MOP_ENGINE_STALL_MS: expected an integer in \[100, /);
    assert.throws(() => resolveConfig({ maxVariants: '0' }), /--max-variants \/ MOP_MAX_VARIANTS: expected an integer in \[1, 256\]/);
    assert.throws(() => resolveConfig({ adminPort: '70000' }), /--admin-port \/ MOP_ADMIN_PORT/);
    assert.throws(() => resolveConfig({ maxEventClients: '0' }), /--max-event-clients \/ MOP_MAX_EVENT_CLIENTS/);
    assert.throws(() => resolveConfig({ maxJobHistory: '0' }), /--max-job-history \/ MOP_MAX_JOB_HISTORY/);
    assert.throws(() => resolveConfig({ dataDir: '' }), /--data-dir \/ MOP_DATA_DIR: expected a non-empty value/);
    const ok = resolveConfig({ apiKey: 'k-0123456789abcdef, k-0123456789abcdeg', allowedOrigins: 'https://a.example,http://127.0.0.1:3000' });
    assert.deepEqual(ok.apiKeys, ['k-0123456789abcdef', 'k-0123456789abcdeg']);
    assert.deepEqual(ok.allowedOrigins, ['https://a.example', 'http://127.0.0.1:3000']);
  });

  it('lets idle pool threads sleep unless --ort-spin / MOP_ORT_SPIN is on', () => {
    assert.equal(defaultServerConfig.ortSpin, false);
    assert.equal(configFromEnv({ MOP_ORT_SPIN: 'on' }).ortSpin, true);
    assert.equal(resolveConfig({ ortSpin: 'off' }).ortSpin, false);
    assert.throws(() => resolveConfig({ ortSpin: '1' }), /--ort-spin \/ MOP_ORT_SPIN: expected one of on, off, got '1'/);
  });

  it('batches fresh prompts unless --batch-prefill / MOP_BATCH_PREFILL is off', () => {
    assert.equal(defaultServerConfig.batchPrefill, true);
    assert.equal(configFromEnv({ MOP_BATCH_PREFILL: 'off' }).batchPrefill, false);
    assert.equal(resolveConfig({ batchPrefill: 'on' }).batchPrefill, true);
    assert.throws(() => resolveConfig({ batchPrefill: 'yes' }), /--batch-prefill \/ MOP_BATCH_PREFILL: expected one of on, off, got 'yes'/);
  });

  it('redacts the admin token when printing the configuration', () => {
    const lines = formatConfig(resolveConfig({ adminToken: 's3cret-admin-token-0123', port: '1234' })).join('\n');
    assert.ok(!lines.includes('s3cret-admin-token-0123'));
    assert.match(lines, /MOP_ADMIN_TOKEN\s+<redacted>/);
    assert.match(lines, /PORT\s+1234/);
  });

  it('derives the served model name from the checkpoint file name', () => {
    assert.equal(modelNameFromPath('/x/models/stories260K/stories260K.bin'), 'stories260K');
    assert.equal(modelNameFromPath('/x/llama-3.2-1b.gguf'), 'llama-3.2-1b');
    assert.equal(modelNameFromPath('/x/TinyLlama-1.1B/'), 'TinyLlama-1.1B');
  });
});

describe('mop serve', () => {
  it('exits 2 with one line naming the flag and variable for a bad environment value', async () => {
    const { code, stderr } = await run(['serve'], { MOP_MAX_QUEUE: '-3' });
    assert.equal(code, 2);
    assert.equal(stderr.trim(), "mop serve: error: --max-queue / MOP_MAX_QUEUE: expected an integer in [1, 9007199254740991], got '-3'");
  });

  it('starts, answers, and exits 0 on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', MOP, 'serve', '--host', '127.0.0.1', '--port', '0', '--threads', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no 'ready' line in time:\n${log}`)), 30_000);
      child.stderr.on('data', (d: Buffer) => {
        log += d.toString();
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
        if (m && log.includes('ready: probe generation succeeded')) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once('exit', () => reject(new Error(`exited early:\n${log}`)));
    });
    assert.match(log, /MOP_MAX_BATCH\s+8/);
    assert.match(log, /loaded .*stories260K\.bin/);
    assert.match(log, /chat template: the checkpoint has none/);
    const res = await fetch(url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 4, temperature: 0 }) });
    assert.equal(res.status, 200);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.match(log, /shut down/);
  });
});

function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MOP, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (code) => resolve({ code, stderr }));
  });
}
