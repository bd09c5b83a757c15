import { InvalidArgumentError, Option } from 'commander';
import { type DeviceName, parseDeviceRequest } from '../runtime/device/device.ts';
import { systemProbe } from '../runtime/device/probe.ts';
import { resolveTarget } from '../runtime/device/resolve.ts';

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

/** The --device option of commands that only run float32 analysis passes (prune, eval). */
export function deviceOption(): Option {
  return envOption('--device <device>', 'device of the calibration/evaluation passes: auto, cpu, webgpu or cuda', 'MOP_DEVICE').default('auto');
}

/** Resolve a --device value on this machine; a fallback warning goes to stderr. */
export async function resolveDeviceArg(value: string): Promise<DeviceName> {
  const { target, warning } = await resolveTarget(parseDeviceRequest(value), 'float32', systemProbe());
  if (warning) process.stderr.write(`mop: warning: ${warning}\n`);
  return target.device;
}
