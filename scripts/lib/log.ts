/** A progress line on stderr, stamped with the UTC time of day (stdout stays free for a script's results). */
export function log(line: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
}
