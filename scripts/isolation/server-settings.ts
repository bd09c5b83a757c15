/**
 * What the server made of the settings it was given: `mop serve` prints its configuration once at
 * start-up, one `  ENV_NAME   value` line per setting it reads. An environment variable missing
 * from that print (MOP_PRUNE_THREADS on a server that predates it) was ignored.
 */

/** The value the server printed for `env`, or null when its configuration has no such line. */
export function printedSetting(log: string, env: string): string | null {
  for (const line of log.split('\n')) {
    const m = /^\s+([A-Z][A-Z0-9_]*)\s+(.*)$/.exec(line);
    if (m && m[1] === env) return m[2]!.trim();
  }
  return null;
}

/** A command line as a shell would take it back: arguments with spaces or quotes are quoted. */
export function shellCommand(args: readonly string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(' ');
}
