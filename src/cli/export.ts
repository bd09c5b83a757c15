import type { Command } from 'commander';
import { promises as fs } from 'node:fs';
import { checkExportRequest, exportDtypes, exportFormats, exportModel } from '../mop/export.ts';
import { defaultModelPath, loadModel } from '../runtime/model/load.ts';
import { parameterCounts } from '../runtime/model/spec.ts';
import { envOption } from './options.ts';

/**
 * `mop export`: write a checkpoint (a pruned directory from `mop prune`, or any model we load) as a
 * GGUF file that llama.cpp / Ollama run, or as a Hugging Face directory.
 */
export function registerExportCommand(program: Command): void {
  program
    .command('export')
    .description('write a model (e.g. a pruned directory) as a GGUF file for llama.cpp / Ollama, or as a Hugging Face directory')
    .addOption(envOption('-m, --model <path>', 'checkpoint to export: Hugging Face directory (e.g. from mop prune), GGUF file or llama2.c .bin (default: bundled stories260K)', 'MOP_MODEL'))
    .addOption(envOption('--tokenizer <path>', 'tokenizer file for llama2.c checkpoints (default: beside the model)', 'MOP_TOKENIZER'))
    .addOption(envOption('--format <format>', `output format: ${exportFormats.join(' or ')}`, 'MOP_EXPORT_FORMAT').default('gguf'))
    .addOption(envOption('--dtype <type>', `weight storage: ${exportDtypes.join(', ')} (hf: f32 or f16)`, 'MOP_EXPORT_DTYPE').default('f32'))
    .addOption(envOption('-o, --out <path>', 'output GGUF file or Hugging Face directory (must not exist)', 'MOP_OUT').makeOptionMandatory())
    .action(async (o) => {
      const request = checkExportRequest({ format: o.format, dtype: o.dtype });
      const started = performance.now();
      const model = await loadModel(o.model ?? defaultModelPath(), o.tokenizer ? { tokenizerPath: o.tokenizer } : {});
      await exportModel(model, o.out, request);
      const st = await fs.stat(o.out);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const size = st.isFile() ? `, ${(st.size / 2 ** 20).toFixed(2)} MiB` : '';
      const shapes = model.spec.layers.map((l) => `${l.heads}h/${l.kvHeads}kv/${l.ffn}ffn`).join(' ');
      process.stdout.write(
        `wrote ${o.out}: ${request.format} ${request.dtype}, ${model.spec.layers.length} layers (${shapes}), ${parameterCounts(model.spec).total.toLocaleString('en-US')} parameters${size} (${seconds} s)\n`,
      );
    });
}
