import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { readSafetensors, writeSafetensors } from '../../src/runtime/model/safetensors.ts';
import { ModelFormatError } from '../../src/runtime/model/spec.ts';
import { tensor } from '../../src/runtime/model/tensor.ts';
import { tempDir } from './model-helpers.ts';

/** A safetensors file from a header object and raw data bytes, exactly as given. */
function rawFile(header: unknown, data: Uint8Array, headerLen?: number): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerLen ?? json.length));
  return Buffer.concat([len, json, data]);
}

async function rejectsWith(p: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.ok(e instanceof ModelFormatError, `ModelFormatError expected, got ${e.name}: ${e.message}`);
    for (const part of parts) {
      if (typeof part === 'string') assert.ok(e.message.includes(part), `message should name ${part}: ${e.message}`);
      else assert.match(e.message, part);
    }
    return true;
  });
}

test('safetensors round-trips F32 bit-exactly, with an 8-byte aligned header', async () => {
  const dir = await tempDir('st');
  const path = join(dir, 'a.safetensors');
  const a = tensor([2, 3], new Float32Array([1, -0, NaN, Infinity, 1e-40, -3.25]));
  const b = tensor([5], new Float32Array([0.1, 0.2, 0.3, 0.4, 0.5]));
  await writeSafetensors(path, [['a', a], ['b', b]]);
  const bytes = await readFile(path);
  assert.equal(Number(bytes.readBigUInt64LE(0)) % 8, 0);
  const back = await readSafetensors(path);
  assert.deepEqual([...back.keys()], ['a', 'b']);
  assert.deepEqual(new Uint32Array(back.get('a')!.data.buffer), new Uint32Array(a.data.buffer));
  assert.deepEqual(back.get('b'), b);
});

test('a truncated safetensors file reports its size and the size it needs', async () => {
  const dir = await tempDir('st-trunc');
  const path = join(dir, 'cut.safetensors');
  await writeSafetensors(path, [['w', tensor([16, 16])]]);
  const bytes = await readFile(path);
  await writeFile(path, bytes.subarray(0, bytes.length - 100));
  await rejectsWith(readSafetensors(path), `truncated: ${path} has ${bytes.length - 100} bytes, needs ${bytes.length}`);
  // A header length that runs past the end of the file.
  await writeFile(path, rawFile({}, new Uint8Array(0), 1000));
  await rejectsWith(readSafetensors(path), /truncated: .* has 10 bytes, needs 1008/);
});

test('bad header entries are refused, naming the file and the tensor', async () => {
  const dir = await tempDir('st-bad');
  const path = join(dir, 'bad.safetensors');
  const data = new Uint8Array(16);
  const cases: [unknown, string][] = [
    [{ w: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, 'unsupported dtype "I64"'],
    [{ w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 16] } }, 'needs 24'],
    [{ w: { dtype: 'F32', shape: [4], data_offsets: [8, 4] } }, 'data_offsets [8, 4]'],
    [{ w: { dtype: 'F16', shape: [2], data_offsets: [0] } }, 'invalid data_offsets'],
  ];
  for (const [header, part] of cases) {
    await writeFile(path, rawFile(header, data));
    await rejectsWith(readSafetensors(path), path, 'tensor w', part);
  }
  // Offsets past the data are reported as truncation.
  await writeFile(path, rawFile({ w: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }, data));
  await rejectsWith(readSafetensors(path), /truncated: .*bad\.safetensors has \d+ bytes, needs \d+/);
  await writeFile(path, Buffer.concat([rawFile({}, new Uint8Array(0)).subarray(0, 8), Buffer.from('{"w": [')]));
  await rejectsWith(readSafetensors(path), 'not valid JSON');
});
