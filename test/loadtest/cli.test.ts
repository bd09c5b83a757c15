import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CLI_OPTIONS, optionsFromArgs } from '../../loadtest/cli.ts';
import type { LoadReport } from '../../loadtest/load-generator.ts';
import { OPTION_TABLE } from '../../loadtest/options.ts';
import { startStub, type StubServer } from './helpers/stub-server.ts';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node --import tsx loadtest/cli.ts <args>`, asynchronously (the stub answers from this process), bounded in time. */
function runCli(args: string[], timeoutMs = 30_000): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.resolve('loadtest/cli.ts'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('loadtest CLI', () => {
  let stub: StubServer;
  let dir: string;
  before(async () => {
    stub = await startStub({ delayMs: 5, firstChunkDelayMs: 5, tokenIntervalMs: 2 });
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'loadtest-cli-'));
  });
  after(async () => {
    await stub.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('runs a streaming closed-model test, prints a summary and writes the JSON report', async () => {
    const out = path.join(dir, 'sub', 'report.json');
    const before = stub.count;
    const r = await runCli(['--url', stub.url, '--scenario', 'closed', '--concurrency', '2', '--requests', '6', '--duration', '10s', '--stream', '--max-tokens', '5', '--model', 'dense', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(stub.count - before, 6);
    assert.match(r.stdout, /closed model, concurrency 2, streaming, max_tokens 5, model dense/);
    assert.match(r.stdout, /requests: 6 sent, 6 ok, 0 failed/);
    assert.match(r.stdout, /ttft ms/);
    const report = JSON.parse(await fs.readFile(out, 'utf8')) as LoadReport;
    assert.equal(report.sent, 6);
    assert.equal(report.stream, true);
    assert.deepEqual(report.models, ['dense']);
    assert.equal(report.latencyMs.ttft?.count, 6);
  });

  it('prints the report on stdout with --json, the summary then on stderr', async () => {
    const r = await runCli(['--url', stub.url, '--scenario', 'open', '--rate', '20', '--duration', '0.3', '--requests', '100', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as LoadReport;
    assert.equal(report.scenario, 'open');
    assert.equal(report.arrivals, 6);
    assert.match(r.stderr, /open model, 20 req\/s/);
  });

  it('exits 99 when a threshold fails, as k6 does', async () => {
    const r = await runCli(['--url', stub.url, '--requests', '2', '--p95-ms', '1', '-q']);
    assert.equal(r.code, 99, r.stderr);
    assert.equal(r.stdout, '');
  });

  it('refuses a non-loopback URL in one line, exit 2, sending nothing', async () => {
    const r = await runCli(['--url', 'http://203.0.113.7:8080', '--requests', '1']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^loadtest: error: refusing to load-test 203\.0\.113\.7:8080: only loopback targets are allowed/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });

  it('rejects a malformed option naming the flag', () => {
    assert.throws(() => optionsFromArgs(['--duration', 'forever']), /--duration must be a duration/);
    assert.throws(() => optionsFromArgs(['--rate', 'fast']), /--rate must be a number/);
    assert.throws(() => optionsFromArgs(['--extra-body', '{oops']), /--extra-body must be a JSON object/);
    assert.throws(() => optionsFromArgs(['--bogus']), /Unknown option '--bogus'/);
  });

  it('has one flag per option-table row and converts each to the option type', () => {
    for (const spec of OPTION_TABLE) assert.ok(spec.flag in CLI_OPTIONS, `--${spec.flag}`);
    const { load } = optionsFromArgs([
      '--url', 'http://127.0.0.1:1',
      '--model', 'a,b', '--model', 'c',
      '--scenario', 'open', '--rate', '2.5', '--concurrency', '3', '--max-in-flight', '9',
      '--requests', '50', '--duration', '2m', '--graceful-stop', '500ms', '--timeout', '7',
      '--stream', '--no-usage', '--max-tokens', '32', '--temperature', '0.8', '--ignore-eos',
      '--extra-body', '{"top_p":0.9}', '--prompts', 'x.txt', '--prompt-order', 'random', '--seed', '5',
      '--p95-ms', '900', '--max-error-rate', '0.1',
    ]);
    assert.deepEqual(load, {
      url: 'http://127.0.0.1:1',
      model: ['a', 'b', 'c'],
      scenario: 'open',
      rate: 2.5,
      concurrency: 3,
      maxInFlight: 9,
      maxRequests: 50,
      durationSec: 120,
      gracefulStopSec: 0.5,
      timeoutSec: 7,
      stream: true,
      includeUsage: false,
      maxTokens: 32,
      temperature: 0.8,
      ignoreEos: true,
      extraBody: { top_p: 0.9 },
      promptsFile: 'x.txt',
      promptOrder: 'random',
      seed: 5,
      p95Ms: 900,
      maxErrorRate: 0.1,
    });
  });
});
