import { Command, Option } from 'commander';
import { ChatTemplateError } from '../server/chat-template.ts';
import { ConfigError, configKnobs, resolveConfig, type ServerConfig } from '../server/config.ts';
import { startServer } from '../server/main.ts';

/**
 * `mop serve`: the OpenAI-compatible server. Flags come from the knob table in
 * src/server/config.ts (each with its environment variable); values are parsed there so a bad
 * one fails with a single line naming both.
 */
export function serveCommand(): Command {
  const cmd = new Command('serve').description('serve the model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /metrics)');
  for (const knob of configKnobs) cmd.addOption(new Option(knob.flag, knob.description).env(knob.env));
  cmd.action(async (raw: Partial<Record<string, string>>) => {
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
    let server;
    try {
      server = await startServer(config);
    } catch (e) {
      if (e instanceof ChatTemplateError || (e as { code?: string }).code === 'EADDRINUSE' || (e as { code?: string }).code === 'EACCES') {
        process.stderr.write(`mop serve: error: ${(e as Error).message}\n`);
        process.exit(1);
      }
      throw e;
    }
    const running = server;
    let signals = 0;
    const shutdown = (signal: NodeJS.Signals) => {
      // A second signal means "now": skip the grace period.
      if (++signals > 1) process.exit(1);
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
  });
  return cmd;
}
