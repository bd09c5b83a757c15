/** Option values as scripts take them: numbers checked where they are read, lists comma-separated. */

/** `value` as a number, or an error naming `--name` when it is not one or `ok` refuses it. */
export function numberOption(name: string, value: string, ok: (n: number) => boolean): number {
  const n = Number(value);
  if (value.trim() === '' || !ok(n)) throw new Error(`--${name}: bad value '${value}'`);
  return n;
}

export function isPositiveInt(n: number): boolean {
  return Number.isInteger(n) && n >= 1;
}

/** An integer in [min, max], or an error that says so. */
export function intOption(name: string, value: string, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new Error(`--${name}: expected an integer ${max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `in [${min}, ${max}]`}, got '${value}'`);
  }
  return n;
}

/** A comma-separated list, each item trimmed, empty items dropped. */
export function listOption(value: string): string[] {
  return value.split(',').map((x) => x.trim()).filter(Boolean);
}

/** A comma-separated list of numbers, each checked by `ok`. */
export function numberListOption(name: string, value: string, ok: (n: number) => boolean = Number.isFinite): number[] {
  return listOption(value).map((x) => numberOption(name, x, ok));
}

/** `on` → true, `off` → false (the server's own on/off flags, e.g. --ort-spin). */
export function onOffOption(name: string, value: string): boolean {
  if (value !== 'on' && value !== 'off') throw new Error(`--${name}: on or off, not '${value}'`);
  return value === 'on';
}
