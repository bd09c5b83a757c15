/**
 * loadModel: one entry point for every checkpoint format. The format is detected from what is at
 * the path (a directory with config.json, a file starting with the GGUF magic, a llama2.c `.bin`);
 * every reader validates the spec and each weight's shape and reports truncated files as such.
 */
import { existsSync, promises as fs } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CheckpointFormat, LoadedModel } from './loaded-model.ts';
import { ModelFormatError } from './spec.ts';
import { readHfDirectory } from './hf.ts';
import { readGguf } from './gguf-model.ts';
import { readLlama2c } from './llama2c.ts';

const ACCEPTED =
  'expected a llama2.c checkpoint (.bin, with tokenizer.bin / tok*.bin beside it), a GGUF file, ' +
  'or a Hugging Face directory with config.json, model.safetensors (or a shard index) and tokenizer.json';

export interface LoadModelOptions {
  /** Tokenizer file: llama2.c tokenizer for .bin (and GGUF without one), tokenizer.json for HF. */
  tokenizerPath?: string;
}

/** Which reader handles `path`; a ModelFormatError naming the accepted formats when none does. */
export async function detectFormat(path: string): Promise<CheckpointFormat> {
  let st;
  try {
    st = await fs.stat(path);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new ModelFormatError(`no model at ${path}: ${ACCEPTED}`);
    throw e;
  }
  if (st.isDirectory()) {
    if (existsSync(join(path, 'config.json'))) return 'hf';
    throw new ModelFormatError(`${path} is a directory without config.json: ${ACCEPTED}`);
  }
  const head = new Uint8Array(4);
  const fh = await fs.open(path, 'r');
  try {
    await fh.read(head, 0, 4, 0);
  } finally {
    await fh.close();
  }
  if (String.fromCharCode(...head) === 'GGUF') return 'gguf';
  if (path.toLowerCase().endsWith('.bin')) return 'llama2c';
  if (path.toLowerCase().endsWith('.gguf')) return 'gguf'; // let the GGUF reader explain the bad magic
  if (path.toLowerCase().endsWith('.safetensors')) {
    throw new ModelFormatError(`${path}: a bare .safetensors file has no config; pass the directory holding it and config.json`);
  }
  throw new ModelFormatError(`cannot tell the format of ${path}: ${ACCEPTED}`);
}

/** Read a checkpoint of any supported format into memory. */
export async function loadModel(path: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  const format = await detectFormat(path);
  switch (format) {
    case 'hf':
      return readHfDirectory(path, options);
    case 'gguf':
      return readGguf(path, options);
    case 'llama2c':
      return readLlama2c(path, options);
  }
}

/** The package root: the nearest directory above this module holding package.json (src/ or dist/). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** The bundled default model, stories260K (llama2.c checkpoint with tok512.bin beside it). */
export function defaultModelPath(): string {
  return resolve(packageRoot(), 'models/stories260K/stories260K.bin');
}
