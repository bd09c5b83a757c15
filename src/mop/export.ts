import { promises as fs } from 'node:fs';
import { basename, join } from 'node:path';
import { type GgufWriteDtype, ggufWriteDtypes, isGgufWriteDtype, writeGguf } from '../runtime/model/gguf-writer.ts';
import { writeHfDirectory } from '../runtime/model/hf.ts';
import type { LoadedModel } from '../runtime/model/loaded-model.ts';
import { byteBpeToTokenizerJson } from '../runtime/tokenizer/byte-bpe.ts';
import { scoredVocabToHfTokenizer } from '../runtime/tokenizer/from-scored-vocab.ts';
import type { TokenizerSource } from '../runtime/tokenizer/types.ts';
import { MopInputError } from './errors.ts';
import { type PruneReport, writeReport } from './report.ts';
import type { ModelWeights } from './surgery.ts';

/**
 * A pruned model on disk: a Hugging Face directory (config.json with per-layer `layer_shapes`,
 * model.safetensors, tokenizer.json + tokenizer_config.json converted from whatever tokenizer the
 * source checkpoint had) plus report.json. loadModel(dir) reads it back exactly.
 */
export async function writePrunedModel(
  dir: string,
  model: ModelWeights,
  source: Pick<LoadedModel, 'tokenizer' | 'chatTemplate'>,
  report?: PruneReport,
  options: { dtype?: 'F32' | 'F16' } = {},
): Promise<void> {
  try {
    const st = await fs.stat(dir);
    if (!st.isDirectory()) throw new MopInputError(`output path ${dir} exists and is not a directory`);
  } catch (e) {
    if ((e as { code?: unknown }).code !== 'ENOENT') throw e;
  }
  const { json, config } = hfTokenizerFiles(source.tokenizer);
  await writeHfDirectory(model, dir, { tokenizerJson: json, ...(config !== undefined && { tokenizerConfig: config }), ...(options.dtype && { dtype: options.dtype }) });
  if (source.chatTemplate !== undefined) await fs.writeFile(join(dir, 'chat_template.jinja'), source.chatTemplate);
  if (report) await writeReport(dir, report);
}

/** tokenizer.json (+ tokenizer_config.json) contents for any tokenizer a checkpoint can carry. */
export function hfTokenizerFiles(source: TokenizerSource): { json: unknown; config?: unknown } {
  switch (source.kind) {
    case 'scored-vocab': {
      const t = scoredVocabToHfTokenizer(source);
      return { json: t.tokenizerJson, config: t.tokenizerConfig };
    }
    case 'byte-bpe':
      return byteBpeToTokenizerJson(source);
    case 'tokenizer.json':
      return source.config === undefined ? { json: source.json } : { json: source.json, config: source.config };
  }
}

/** What `mop export` and the admin export route write. */
export type ExportFormat = 'gguf' | 'hf';
export const exportFormats: readonly ExportFormat[] = ['gguf', 'hf'];
export type ExportDtype = GgufWriteDtype;
export const exportDtypes: readonly ExportDtype[] = ggufWriteDtypes;
/** Storage each format takes: Hugging Face safetensors hold floats only. */
const hfDtypes: Partial<Record<ExportDtype, 'F32' | 'F16'>> = { f32: 'F32', f16: 'F16' };

export interface ExportRequest {
  format: string;
  dtype: string;
}

/** A checked export request; a bad format, dtype or pair is a MopInputError saying what would do. */
export function checkExportRequest(r: ExportRequest): { format: ExportFormat; dtype: ExportDtype } {
  const format = r.format.toLowerCase();
  const dtype = r.dtype.toLowerCase();
  if (!(exportFormats as readonly string[]).includes(format)) throw new MopInputError(`unknown export format '${r.format}'; one of ${exportFormats.join(', ')}`);
  if (!isGgufWriteDtype(dtype)) throw new MopInputError(`unknown export dtype '${r.dtype}'; one of ${exportDtypes.join(', ')}`);
  if (format === 'hf' && hfDtypes[dtype] === undefined) {
    throw new MopInputError(`--format hf stores f32 or f16 (safetensors holds no Q8_0 / Q4_0 blocks); use --format gguf for ${dtype}`);
  }
  return { format: format as ExportFormat, dtype };
}

/**
 * Write `model` in `format`: a GGUF file llama.cpp loads (any pruned shape, see
 * runtime/model/gguf-export-form.ts), or a Hugging Face directory. A GGUF file is written beside
 * `out` and renamed into place, so a failed export leaves no half file behind; an existing `out`
 * is never overwritten.
 */
export async function exportModel(model: ModelWeights & Pick<LoadedModel, 'tokenizer' | 'chatTemplate'>, out: string, request: ExportRequest, name?: string): Promise<void> {
  const { format, dtype } = checkExportRequest(request);
  if (await fs.stat(out).then(() => true, () => false)) throw new MopInputError(`${out} exists; remove it or choose another output path`);
  if (format === 'hf') return writePrunedModel(out, model, model, undefined, { dtype: hfDtypes[dtype]! });
  const partial = `${out}.partial-${process.pid}`;
  try {
    await writeGguf(model, partial, { dtype, tokenizer: model.tokenizer, name: name ?? basename(out).replace(/\.gguf$/i, ''), ...(model.chatTemplate !== undefined && { chatTemplate: model.chatTemplate }) });
    await fs.rename(partial, out);
  } finally {
    await fs.rm(partial, { force: true });
  }
}
