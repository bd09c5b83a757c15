/** A server configuration from environment variables alone, through the knob table (what `mop serve` reads besides argv). */
import { configKnobs, resolveConfig, type ServerConfig } from '../../../src/server/config.ts';

export function configFromEnv(env: NodeJS.ProcessEnv): ServerConfig {
  const raw: Partial<Record<string, string>> = {};
  for (const knob of configKnobs) {
    const v = env[knob.env];
    if (v !== undefined) raw[knob.key] = v;
  }
  return resolveConfig(raw);
}
