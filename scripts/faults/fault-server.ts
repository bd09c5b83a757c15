/**
 * `mop serve` with fault-injectable engine workers, as a child process of bench:faults: the same
 * flags (the knob table of src/server/config.ts), `startServer(config, { engineWorker: faultEngineWorker })`,
 * and an IPC listener: the parent sends `{ type: 'engine-fault', fault }` and every engine worker
 * of `fault.variant` stalls or crashes (fault-engine-worker.ts). SIGTERM/SIGINT drain and exit 0.
 *
 *   node --import tsx scripts/faults/fault-server.ts [mop serve flags]   (spawned by server-child.ts)
 */
import { Command, Option } from 'commander';
import { configKnobs, resolveConfig } from '../../src/server/config.ts';
import { startServer } from '../../src/server/main.ts';
import type { EngineFault } from './fault-engine-worker.ts';
import { faultEngineWorker, injectEngineFault } from './inject.ts';

const cmd = new Command('fault-server').allowExcessArguments(false);
for (const knob of configKnobs) cmd.addOption(new Option(knob.flag, knob.description).env(knob.env));
cmd.parse(process.argv);
const server = await startServer(resolveConfig(cmd.opts()), { engineWorker: faultEngineWorker });

process.on('message', (m: { type?: string; fault?: EngineFault }) => {
  if (m.type === 'engine-fault' && m.fault) injectEngineFault(m.fault);
});
// The IPC channel alone never keeps the process alive.
process.channel?.unref();

let signals = 0;
const shutdown = (signal: NodeJS.Signals) => {
  if (++signals > 1) process.exit(1);
  process.stderr.write(`received ${signal}\n`);
  server.close().then(
    () => process.exit(0),
    (e) => {
      process.stderr.write(`fault-server: error during shutdown: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
