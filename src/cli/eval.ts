import type { Command } from 'commander';
import { defaultModelPath, loadModel } from '../runtime/model/load.ts';
import { checkTokenizerMatchesModel, createTokenizer } from '../runtime/tokenizer/create.ts';
import { defaultHeldoutPath, readTextFile } from '../mop/calibration.ts';
import { MopInputError } from '../mop/errors.ts';
import { klDivergence, perplexity, textWindows } from '../mop/evaluate.ts';
import { deviceOption, envOption, parseIntArg, resolveDeviceArg } from './options.ts';
import { parseDtypeRequest, targetFor } from '../runtime/device/device.ts';
import { decoderPerplexity } from '../runtime/engine/decoder-perplexity.ts';

/**
 * `mop eval`: perplexity of a model (dense checkpoint or pruned directory) on a text file, over
 * non-overlapping windows; with --reference, also the KL divergence of its next-token
 * distributions to the reference (dense) model.
 */
export function registerEvalCommand(program: Command): void {
  program
    .command('eval')
    .description('perplexity of a model on held-out text (and KL divergence to a reference model)')
    .addOption(envOption('-m, --model <path>', 'checkpoint or pruned directory (default: bundled stories260K)', 'MOP_MODEL'))
    .addOption(envOption('--tokenizer <path>', 'tokenizer file for llama2.c checkpoints', 'MOP_TOKENIZER'))
    .addOption(envOption('--data <file>', 'evaluation text (default: bundled held-out TinyStories slice)', 'MOP_DATA'))
    .addOption(envOption('--seq-len <n>', 'window length in tokens (default: 256, at most the model context)', 'MOP_EVAL_SEQ_LEN').argParser(parseIntArg(2)))
    .addOption(envOption('--reference <path>', 'also report KL(reference ‖ model) against this (dense) model', 'MOP_REFERENCE'))
    .addOption(envOption('--threads <n>', 'intra-op threads (default: all cores)', 'MOP_THREADS').argParser(parseIntArg(1)))
    .addOption(deviceOption())
    .addOption(envOption('--dtype <type>', 'float32 (default), or int8 / int4: perplexity of the block-quantized serving graph (CPU)', 'MOP_DTYPE').default('float32'))
    .action(async (o) => {
      const dtype = parseDtypeRequest(o.dtype);
      if (dtype === 'float16') throw new MopInputError('mop eval runs float32, int8 or int4; float16 is a GPU serving dtype');
      const quantized = dtype === 'int8' || dtype === 'int4';
      if (quantized && o.reference) throw new MopInputError(`--reference (KL divergence) runs float32 only; drop --dtype ${dtype} or --reference`);
      const model = await loadModel(o.model ?? defaultModelPath(), o.tokenizer ? { tokenizerPath: o.tokenizer } : {});
      const tokenizer = createTokenizer(model.tokenizer);
      checkTokenizerMatchesModel(tokenizer, model.spec.vocabSize, model.path);
      const seqLen: number = o.seqLen ?? Math.min(256, model.spec.maxContext);
      if (seqLen > model.spec.maxContext) throw new MopInputError(`--seq-len ${seqLen} exceeds the model's context of ${model.spec.maxContext}`);
      const dataPath: string = o.data ?? defaultHeldoutPath();
      const windows = textWindows(tokenizer, await readTextFile(dataPath, 'evaluation data'), seqLen);
      const threads = { ...(o.threads !== undefined && { threads: o.threads as number }), device: await resolveDeviceArg(o.device) };
      const ppl = quantized
        ? await decoderPerplexity(model, windows.sequences, { target: targetFor(threads.device, dtype), ...(o.threads !== undefined && { threads: o.threads as number }) })
        : await perplexity(model, windows, threads);
      process.stdout.write(`perplexity: ${ppl.perplexity.toFixed(4)}\ntokens: ${ppl.tokens}\n`);
      if (o.reference) {
        const reference = await loadModel(o.reference);
        const kl = await klDivergence(reference, model, windows, threads);
        process.stdout.write(`kl: ${kl.meanKl.toFixed(6)}\n`);
      }
    });
}
