import { Command } from 'commander';
import { parseDeviceRequest, parseDtypeRequest } from '../runtime/device/device.ts';
import { generate } from '../runtime/engine/generate.ts';
import { describeModel, openModel } from '../runtime/engine/open-model.ts';
import { defaultSamplingParams, validateSamplingParams } from '../runtime/engine/sampling-params.ts';
import { loadModel, defaultModelPath } from '../runtime/model/load.ts';
import { parameterCounts } from '../runtime/model/spec.ts';
import { createTokenizer } from '../runtime/tokenizer/create.ts';
import { registerEvalCommand } from './eval.ts';
import { registerExportCommand } from './export.ts';
import { collect, envOption, parseFloatArg, parseIntArg } from './options.ts';
import { registerPruneCommand } from './prune.ts';
import { serveCommand } from './serve.ts';
import { registerSynthCommand } from './synth.ts';
import { reportCliError } from './report-error.ts';

const program = new Command('mop')
  .description('LLaMA-family inference on ONNX Runtime, with MoP structured pruning')
  .showHelpAfterError();

program
  .command('generate')
  .description('stream the continuation of a prompt to stdout')
  .addOption(envOption('-m, --model <path>', 'checkpoint: llama2.c .bin, GGUF file or Hugging Face directory (default: bundled stories260K)', 'MOP_MODEL'))
  .addOption(envOption('--tokenizer <path>', 'tokenizer file for llama2.c checkpoints (default: beside the model)', 'MOP_TOKENIZER'))
  .addOption(envOption('-p, --prompt <text>', 'prompt text', 'MOP_PROMPT').default('Once upon a time'))
  .addOption(envOption('-n, --max-tokens <n>', 'most tokens to generate', 'MOP_MAX_TOKENS').argParser(parseIntArg(1)).default(256))
  .addOption(envOption('-t, --temperature <t>', 'sampling temperature; 0 = greedy', 'MOP_TEMPERATURE').argParser(parseFloatArg).default(0.8))
  .addOption(envOption('--top-p <p>', 'nucleus sampling mass (1 = off)', 'MOP_TOP_P').argParser(parseFloatArg).default(0.95))
  .addOption(envOption('--top-k <k>', 'keep the k most likely tokens (0 = off)', 'MOP_TOP_K').argParser(parseIntArg(-1)).default(0))
  .addOption(envOption('--min-p <p>', 'drop tokens below p × the most likely (0 = off)', 'MOP_MIN_P').argParser(parseFloatArg).default(0))
  .addOption(envOption('--presence-penalty <x>', 'OpenAI presence penalty', 'MOP_PRESENCE_PENALTY').argParser(parseFloatArg).default(0))
  .addOption(envOption('--frequency-penalty <x>', 'OpenAI frequency penalty', 'MOP_FREQUENCY_PENALTY').argParser(parseFloatArg).default(0))
  .addOption(envOption('--repetition-penalty <x>', 'HF/vLLM repetition penalty (1 = off)', 'MOP_REPETITION_PENALTY').argParser(parseFloatArg).default(1))
  .addOption(envOption('-s, --seed <n>', 'random seed: same seed, same text', 'MOP_SEED').argParser(parseIntArg(0)))
  .option('--stop <text>', 'stop string (repeatable)', collect)
  .addOption(envOption('--device <device>', 'execution device: auto, cpu, webgpu, cuda or cuda-native', 'MOP_DEVICE').default('auto'))
  .addOption(envOption('--cuda-addon <file>', "native CUDA addon for cuda-native (default: build/cuda/mop_cuda.node, from 'npm run build:cuda')", 'MOP_CUDA_ADDON'))
  .addOption(envOption('--dtype <type>', 'auto (float16 on GPU, float32 on CPU), float32, float16, or int8 / int4 (block-quantized weights, CPU)', 'MOP_DTYPE').default('auto'))
  .addOption(envOption('--threads <n>', 'intra-op threads (default: all cores)', 'MOP_THREADS').argParser(parseIntArg(1)))
  .addOption(envOption('--context <n>', 'context length (default: the model\'s)', 'MOP_CONTEXT').argParser(parseIntArg(2)))
  .option('-q, --quiet', 'print only the generated text (no load line or speed summary on stderr)')
  .action(async (o) => {
    const sampling = validateSamplingParams(
      defaultSamplingParams({
        temperature: o.temperature,
        topP: o.topP,
        topK: o.topK,
        minP: o.minP,
        presencePenalty: o.presencePenalty,
        frequencyPenalty: o.frequencyPenalty,
        repetitionPenalty: o.repetitionPenalty,
        seed: o.seed,
      }),
    );
    const device = parseDeviceRequest(o.device);
    const dtype = parseDtypeRequest(o.dtype);
    const opened = await openModel({ modelPath: o.model, tokenizerPath: o.tokenizer, device, dtype, maxContext: o.context, threads: o.threads, cudaAddon: o.cudaAddon });
    if (opened.deviceWarning) process.stderr.write(`mop: warning: ${opened.deviceWarning}\n`);
    if (!o.quiet) process.stderr.write(`loaded ${describeModel(opened)} (${opened.deviceNote})\n`);
    const promptTokens = opened.tokenizer.encode(o.prompt);
    const ac = new AbortController();
    process.once('SIGINT', () => ac.abort());
    const started = performance.now();
    let firstAt = 0;
    let tokens = 0;
    for await (const e of generate(opened.session, opened.tokenizer, { promptTokens, maxTokens: o.maxTokens, sampling, stop: o.stop ?? [], signal: ac.signal })) {
      if (e.type === 'token') {
        tokens++;
        if (tokens === 1) firstAt = performance.now();
      }
      if (e.text) process.stdout.write(e.text);
      if (e.type === 'finish' && !o.quiet) {
        const total = (performance.now() - started) / 1000;
        const decodeRate = tokens > 1 ? (tokens - 1) / ((performance.now() - firstAt) / 1000) : 0;
        process.stdout.write('\n');
        process.stderr.write(`[${e.completionTokens} tokens after a ${e.promptTokens}-token prompt in ${total.toFixed(2)} s; decode ${decodeRate.toFixed(1)} tok/s; finish: ${e.reason}]\n`);
      }
    }
    if (o.quiet) process.stdout.write('\n');
    await opened.session.release();
  });

program
  .command('info')
  .description('print the model description: layers, heads, KV heads, ffn, parameter counts')
  .addOption(envOption('-m, --model <path>', 'checkpoint (default: bundled stories260K)', 'MOP_MODEL'))
  .addOption(envOption('--tokenizer <path>', 'tokenizer file for llama2.c checkpoints', 'MOP_TOKENIZER'))
  .option('--json', 'print the ModelSpec as JSON')
  .action(async (o) => {
    const model = await loadModel(o.model ?? defaultModelPath(), o.tokenizer ? { tokenizerPath: o.tokenizer } : {});
    const { spec } = model;
    const p = parameterCounts(spec);
    if (o.json) {
      process.stdout.write(JSON.stringify({ path: model.path, format: model.format, spec, parameters: p }, null, 2) + '\n');
      return;
    }
    const tokenizer = createTokenizer(model.tokenizer);
    const lines = [
      `model:        ${model.path} (${model.format})`,
      `architecture: ${spec.architecture}`,
      `vocab:        ${spec.vocabSize} (tokenizer: ${model.tokenizer.kind}, ${tokenizer.vocabSize} tokens; bos ${spec.bosTokenId}, eos ${spec.eosTokenIds.join(',')})`,
      `hidden:       ${spec.hidden}`,
      `layers:       ${spec.layers.length}`,
      `context:      ${spec.maxContext}`,
      `norm eps:     ${spec.normEps}`,
      `rope:         theta ${spec.rope.theta}${spec.rope.scaling ? `, scaling ${JSON.stringify(spec.rope.scaling)}` : ''}`,
      `embeddings:   ${spec.tiedEmbeddings ? 'tied (LM head shares the token embedding)' : 'separate LM head'}`,
      `parameters:   ${p.total.toLocaleString('en-US')} total = ${p.blocks.toLocaleString('en-US')} in blocks + ${p.embeddings.toLocaleString('en-US')} embeddings/head/norm`,
      '',
      ' layer  heads  kv-heads  head-dim    ffn',
      ...spec.layers.map((l, i) => `${String(i).padStart(6)} ${String(l.heads).padStart(6)} ${String(l.kvHeads).padStart(9)} ${String(l.headDim).padStart(9)} ${String(l.ffn).padStart(6)}`),
    ];
    process.stdout.write(lines.join('\n') + '\n');
  });

program.addCommand(serveCommand());

registerPruneCommand(program);
registerEvalCommand(program);
registerSynthCommand(program);
registerExportCommand(program);

program.parseAsync(process.argv).catch((err) => process.exit(reportCliError(err)));
