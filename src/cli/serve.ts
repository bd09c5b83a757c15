import { Command, Option } from 'commander';
import { ChatTemplateError } from '../server/chat-template.ts';
import { ConfigError, configKnobs, resolveConfig, type ServerConfig } from '../server/config.ts';
import { type RunningServer, shutdownMarginMs, startServer } from '../server/main.ts';
import { StartupAbortedError } from '../server/startup-abort.ts';

/**
 * `mop serve`: the OpenAI-compatible server. Flags come from the knob table in
 * src/server/config.ts (each with its environment variable); values are parsed there so a bad
 * one fails with a single line naming both.
 *
 * Signals: SIGTERM/SIGINT handlers are installed before start-up begins, so a signal during
 * start-up is never dropped (as PID 1 of a container, a signal without a handler is): start-up
 * stops at its next step, releases what it started and the process exits 0. After start-up the
 * server drains (bounded by --shutdown-grace-ms plus a fixed margin) and exits 0. A second signal
 * exits 1 at once.
 */
export function serveCommand(): Command {
  const cmd = new Command('serve').description('serve the model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /metrics)');
  for (const knob of configKnobs) cmd.addOption(new Option(knob.flag, knob.description).env(knob.env));
  cmd.action(async (raw: Partial<Record<string, string>>) => {
    const startup = new AbortController();
    let running: RunningServer | undefined;
    let graceMs: number | undefined;
    let signals = 0;
    let duringStartup: NodeJS.Signals | undefined;
    const shutdown = (signal: NodeJS.Signals) => {
      // A second signal means "now": skip the grace period.
      if (++signals > 1) {
        process.stderr.write(`received ${signal} again; exiting now\n`);
        process.exit(1);
      }
      // Whatever hangs, the process is gone within the bound it promised.
      const bound = (graceMs ?? 0) + shutdownMarginMs + 1000;
      setTimeout(() => {
        process.stderr.write(`mop serve: shutdown did not finish within ${bound} ms; exiting\n`);
        process.exit(1);
      }, bound).unref();
      if (!running) {
        process.stderr.write(`received ${signal} during start-up; exiting\n`);
        duringStartup = signal;
        startup.abort();
        return;
      }
      process.stderr.write(`received ${signal}\n`);
      running.close().then(
        () => process.exit(0),
        (e) => {
          process.stderr.write(`mop serve: error during shutdown: ${e instanceof Error ? e.message : String(e)}\n`);
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', shutdown);
    process.on('SIGINT', shutdown);

    let config: ServerConfig;
    try {
      config = resolveConfig(raw);
    } catch (e) {
      if (e instanceof ConfigError) {
        process.stderr.write(`mop serve: error: ${e.message}\n`);
        process.exit(2);
      }
      throw e;
    }
    graceMs = config.shutdownGraceMs;
    try {
      running = await startServer(config, { signal: startup.signal });
    } catch (e) {
      if (e instanceof StartupAbortedError) {
        process.stderr.write(`mop serve: ${e.message}\n`);
        process.exit(0);
      }
      if (e instanceof ChatTemplateError || (e as { code?: string }).code === 'EADDRINUSE' || (e as { code?: string }).code === 'EACCES') {
        process.stderr.write(`mop serve: error: ${(e as Error).message}\n`);
        process.exit(1);
      }
      throw e;
    }
    // A signal that came after start-up's last check: shut down now.
    if (duringStartup) {
      signals = 0;
      shutdown(duringStartup);
    }
  });
  return cmd;
}
