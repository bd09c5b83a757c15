/** Where a model runs. Only the CPU execution provider is wired up so far. */
export type Device = 'cpu';

export const supportedDevices: readonly Device[] = ['cpu'];

export class DeviceError extends Error {
  override name = 'DeviceError';
}

/** Parse a --device value; 'auto' picks the best available (today always the CPU). */
export function parseDevice(value: string): Device {
  const v = value.trim().toLowerCase();
  if (v === 'cpu' || v === 'auto') return 'cpu';
  if (v === 'cuda' || v === 'webgpu' || v === 'gpu') {
    throw new DeviceError(`device '${value}' is not available in this build: GPU execution is not implemented yet; use --device cpu`);
  }
  throw new DeviceError(`unknown device '${value}'; choose one of: auto, ${supportedDevices.join(', ')}`);
}
