/**
 * `node --import tsx loadtest/cli.ts --url http://127.0.0.1:8080 --scenario closed --concurrency 8 --stream`
 *
 * Runs one load test of /v1/completions, prints a short summary and writes the JSON report
 * (`--out report.json`, or `--json` for stdout). Flags are the k6 script's environment variables
 * under other names (see OPTION_TABLE in options.ts and loadtest/README.md). Exit status: 0, or 99
 * when a threshold failed (as k6), 2 for a bad option or a non-loopback URL, 1 otherwise.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { formatSummary, runLoad } from './load-generator.ts';
import { LoadConfigError, OPTION_TABLE, parseDurationSec, type LoadOptions, type LoadOptionsInput } from './options.ts';

const NUMBERS = new Set<keyof LoadOptions>([
  'rate',
  'concurrency',
  'maxInFlight',
  'maxRequests',
  'maxTokens',
  'temperature',
  'seed',
  'sharedPrefixWords',
  'p95Ms',
  'maxErrorRate',
]);
const DURATIONS = new Set<keyof LoadOptions>(['durationSec', 'gracefulStopSec', 'timeoutSec']);

type CliOptions = NonNullable<ParseArgsConfig['options']>;

/** parseArgs' option config: one flag per OPTION_TABLE row, plus the CLI's own. */
export const CLI_OPTIONS: CliOptions = {
  ...Object.fromEntries(
    OPTION_TABLE.map((spec) => [spec.flag, spec.key === 'model' ? { type: 'string', multiple: true } : { type: spec.type }]),
  ),
  out: { type: 'string', short: 'o' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
};

export interface CliRequest {
  load: LoadOptionsInput;
  out: string | undefined;
  json: boolean;
  quiet: boolean;
  help: boolean;
}

/** The CLI arguments as runLoad options; throws LoadConfigError naming the flag. */
export function optionsFromArgs(argv: string[]): CliRequest {
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options: CLI_OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new LoadConfigError((err as Error).message);
  }
  const load: Record<string, unknown> = { url: 'http://127.0.0.1:8080' };
  for (const spec of OPTION_TABLE) {
    const v = values[spec.flag];
    if (v === undefined) continue;
    const flag = `--${spec.flag}`;
    if (spec.type === 'boolean') {
      load[spec.key] = spec.negate ? !v : v;
    } else if (spec.key === 'model') {
      load.model = (v as string[]).flatMap((m) => m.split(',')).map((m) => m.trim()).filter((m) => m !== '');
    } else if (NUMBERS.has(spec.key)) {
      const n = Number(v);
      if (v === '' || !Number.isFinite(n)) throw new LoadConfigError(`${flag} must be a number, not "${String(v)}"`);
      load[spec.key] = n;
    } else if (DURATIONS.has(spec.key)) {
      load[spec.key] = parseDurationSec(String(v), flag);
    } else if (spec.key === 'extraBody') {
      try {
        load.extraBody = JSON.parse(String(v));
      } catch {
        throw new LoadConfigError(`${flag} must be a JSON object, not ${String(v)}`);
      }
    } else {
      load[spec.key] = v;
    }
  }
  return {
    load: load as LoadOptionsInput,
    out: values.out as string | undefined,
    json: values.json === true,
    quiet: values.quiet === true,
    help: values.help === true,
  };
}

export function usage(): string {
  const rows = OPTION_TABLE.map((s) => {
    const name = `--${s.flag}${s.type === 'string' ? ' <v>' : ''}`;
    return `  ${name.padEnd(24)}${s.help}${s.env ? ` [k6: ${s.env}]` : ''}`;
  });
  return [
    'usage: node --import tsx loadtest/cli.ts [options]',
    '',
    'Load-tests POST /v1/completions of a server on this machine (loopback only).',
    '',
    ...rows,
    `  ${'--out, -o <file>'.padEnd(24)}write the JSON report there`,
    `  ${'--json'.padEnd(24)}print the JSON report on stdout (the summary goes to stderr)`,
    `  ${'--quiet, -q'.padEnd(24)}no summary`,
    '',
    'Exit status: 0; 99 when a threshold failed; 2 for a bad option; 1 for anything else.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  let req: CliRequest;
  try {
    req = optionsFromArgs(argv);
  } catch (err) {
    process.stderr.write(`loadtest: error: ${(err as Error).message}\n`);
    return 2;
  }
  if (req.help) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  const stop = new AbortController();
  const onSigint = (): void => {
    process.stderr.write('loadtest: interrupted, stopping (in-flight requests are aborted)\n');
    stop.abort();
  };
  process.once('SIGINT', onSigint);
  try {
    // The server's own variable works here too (its first key), so one environment serves both.
    const serverKey = process.env.MOP_API_KEY?.split(',')[0]?.trim();
    const report = await runLoad({ ...(serverKey && { apiKey: serverKey }), ...req.load, signal: stop.signal });
    const json = `${JSON.stringify(report, null, 2)}\n`;
    if (req.out) {
      await fs.mkdir(path.dirname(path.resolve(req.out)), { recursive: true });
      await fs.writeFile(req.out, json);
    }
    if (req.json) process.stdout.write(json);
    if (!req.quiet) (req.json ? process.stderr : process.stdout).write(`${formatSummary(report)}\n`);
    if (req.out && !req.quiet) process.stderr.write(`loadtest: report written to ${req.out}\n`);
    return report.thresholdsPassed ? 0 : 99;
  } catch (err) {
    if (err instanceof LoadConfigError) {
      process.stderr.write(`loadtest: error: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`loadtest: error: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
