import { MAX_FILE_BYTES } from './checkpoint-io.ts';

/**
 * How a model's tensors are split over safetensors files. Our readers load a file whole, and Node
 * reads at most 2 GiB at once, so a model bigger than that (a 1B model in float32) is written as
 * Hugging Face shards: model-00001-of-00003.safetensors, … plus model.safetensors.index.json.
 */

/** Tensor bytes per file; the rest of the 2 GiB read limit is left for the JSON header. */
export const DEFAULT_MAX_SHARD_BYTES = MAX_FILE_BYTES - 64 * 2 ** 20;

export interface Shard {
  file: string;
  names: string[];
  bytes: number;
}

/**
 * Tensors (in order) packed greedily into files of at most `maxBytes` tensor bytes each (a single
 * tensor bigger than that gets a file of its own). One file is called model.safetensors.
 */
export function planShards(tensors: readonly (readonly [name: string, bytes: number])[], maxBytes = DEFAULT_MAX_SHARD_BYTES): Shard[] {
  const groups: { names: string[]; bytes: number }[] = [];
  for (const [name, bytes] of tensors) {
    const last = groups.at(-1);
    if (last && last.bytes + bytes <= maxBytes) {
      last.names.push(name);
      last.bytes += bytes;
    } else {
      groups.push({ names: [name], bytes });
    }
  }
  if (groups.length <= 1) return groups.map((g) => ({ file: 'model.safetensors', ...g }));
  const n = String(groups.length).padStart(5, '0');
  return groups.map((g, i) => ({ file: `model-${String(i + 1).padStart(5, '0')}-of-${n}.safetensors`, ...g }));
}

/** model.safetensors.index.json for sharded weights, as transformers writes it. */
export function shardIndex(shards: readonly Shard[]): { metadata: { total_size: number }; weight_map: Record<string, string> } {
  const weight_map: Record<string, string> = {};
  for (const s of shards) for (const name of s.names) weight_map[name] = s.file;
  return { metadata: { total_size: shards.reduce((a, s) => a + s.bytes, 0) }, weight_map };
}
