import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { ModelSpec } from '../../runtime/model/spec.ts';
import { numel, type Weights } from '../../runtime/model/tensor.ts';
import { canonicalJson } from './canonical-json.ts';
import { StoreInputError } from './errors.ts';
import type { HexDigest } from './store-key.ts';

/**
 * SHA-256 of a model's content: its spec (canonical JSON) and every tensor in name order (name,
 * shape, then the float32 bytes as they lie in memory, hashed in place without copies). The same
 * weights give the same digest whatever format or file they were read from, and whatever order
 * the Map was filled in. Bytes are hashed in the platform's order; every platform Node ships for
 * is little-endian, the order safetensors uses.
 * Cost is one pass of SHA-256 over the weights (README.md has the measured figure).
 */
export function digestWeights(spec: ModelSpec, weights: Weights): HexDigest {
  const hash = createHash('sha256');
  hash.update(`mop-serve weights v1\n${canonicalJson(spec, 'spec')}\n`);
  const names = [...weights.keys()].sort();
  for (const name of names) {
    const t = weights.get(name)!;
    if (t.data.length !== numel(t.shape)) throw new StoreInputError(`tensor ${name} has ${t.data.length} values, its shape [${t.shape}] needs ${numel(t.shape)}`);
    // The shape fixes the byte count, so name + shape + bytes is an unambiguous stream.
    hash.update(`${canonicalJson([name, t.shape])}\n`);
    hash.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return hash.digest('hex');
}

/** SHA-256 of a file's bytes, streamed (calibration text, checkpoint files). */
export async function digestFile(path: string): Promise<HexDigest> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
