import fs from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';

type OptionsConfig = NonNullable<ParseArgsConfig['options']>;
const helpOption = { help: { type: 'boolean', short: 'h', default: false } } as const;
/** The parsed values of `options` (and `help`), typed from the table as parseArgs types them. */
export type ScriptArgs<O extends OptionsConfig> = ReturnType<typeof parseArgs<{ options: O & typeof helpOption }>>['values'];

/**
 * A script's command line (node:util parseArgs, strict: an unknown option is refused). `--help` / `-h`
 * prints the script's leading doc comment, which is its usage text, and exits.
 */
export function parseScriptArgs<const O extends OptionsConfig>(scriptUrl: string, options: O): ScriptArgs<O> {
  const { values } = parseArgs({ options: { ...options, ...helpOption } });
  if ((values as { help?: boolean }).help) printDocCommentAndExit(scriptUrl);
  return values as ScriptArgs<O>;
}

/** Print the leading doc comment of the script at `scriptUrl` (its own usage text) and exit. */
export function printDocCommentAndExit(scriptUrl: string): never {
  const text = fs.readFileSync(new URL(scriptUrl), 'utf8');
  process.stdout.write(text.slice(text.indexOf('/**'), text.indexOf('*/') + 2) + '\n');
  process.exit(0);
}
