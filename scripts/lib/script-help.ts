import fs from 'node:fs';

/** `--help` of a benchmark script: print its leading doc comment (the script's own usage text) and exit. */
export function printDocCommentAndExit(scriptUrl: string): never {
  const text = fs.readFileSync(new URL(scriptUrl), 'utf8');
  process.stdout.write(text.slice(text.indexOf('/**'), text.indexOf('*/') + 2) + '\n');
  process.exit(0);
}
