import { promises as fs } from 'node:fs';
import { join } from 'node:path';
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
): Promise<void> {
  try {
    const st = await fs.stat(dir);
    if (!st.isDirectory()) throw new MopInputError(`output path ${dir} exists and is not a directory`);
  } catch (e) {
    if ((e as { code?: unknown }).code !== 'ENOENT') throw e;
  }
  const { json, config } = hfTokenizerFiles(source.tokenizer);
  await writeHfDirectory(model, dir, { tokenizerJson: json, ...(config !== undefined && { tokenizerConfig: config }) });
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
