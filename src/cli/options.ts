import { InvalidArgumentError, Option } from 'commander';

/** Every knob is a flag and an environment variable: MOP_<FLAG_IN_CAPS>. */
export function envOption(flags: string, description: string, env: string): Option {
  return new Option(flags, description).env(env);
}

export function parseIntArg(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer in [${min}, ${max}], got '${value}'`);
    return n;
  };
}

export function parseFloatArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got '${value}'`);
  return n;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
