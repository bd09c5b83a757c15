import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { defaultModelPath, loadModel } from '../runtime/model/load.ts';
import { checkTokenizerMatchesModel, createTokenizer } from '../runtime/tokenizer/create.ts';
import { loadCalibration } from '../mop/calibration.ts';
import { writePrunedModel } from '../mop/export.ts';
import { type MopProgress, runMop, validateMopOptions } from '../mop/mop.ts';
import { readReferenceBlocks, summarizeReport } from '../mop/report.ts';
import type { Strategy } from '../mop/report.ts';
import type { SelectionCriterion } from '../mop/selection.ts';
import { deviceOption, envOption, parseFloatArg, parseIntArg, resolveDeviceArg } from './options.ts';

/**
 * `mop prune`: MoP (or a baseline) to a target compression; writes a loadable Hugging Face
 * directory and report.json into --out. Every flag is also an environment variable (MOP_…).
 */
export function registerPruneCommand(program: Command): void {
  program
    .command('prune')
    .description('prune a model with MoP (or a depth-only / width-only baseline) and write it with its report')
    .addOption(envOption('-m, --model <path>', 'checkpoint or pruned directory (default: bundled stories260K)', 'MOP_MODEL'))
    .addOption(envOption('--tokenizer <path>', 'tokenizer file for llama2.c checkpoints', 'MOP_TOKENIZER'))
    .addOption(envOption('--target <ratio>', 'fraction of transformer-block parameters to remove, in (0, 0.9]', 'MOP_TARGET').argParser(parseFloatArg).makeOptionMandatory())
    .addOption(envOption('--strategy <name>', 'mop, depth (layers only) or width (heads and neurons only)', 'MOP_STRATEGY').default('mop'))
    .addOption(envOption('--criterion <name>', 'candidate selection: ppl, kl or cosine', 'MOP_CRITERION').default('ppl'))
    .addOption(envOption('--importance <name>', 'structure importance: amp or magnitude', 'MOP_IMPORTANCE').default('amp'))
    .addOption(envOption('--calibration <file>', 'calibration text (default: bundled TinyStories slice)', 'MOP_CALIBRATION'))
    .addOption(envOption('--samples <n>', 'calibration sequences', 'MOP_SAMPLES').argParser(parseIntArg(1)).default(32))
    .addOption(envOption('--seq-len <n>', 'tokens per calibration sequence', 'MOP_SEQ_LEN').argParser(parseIntArg(2)).default(128))
    .addOption(envOption('--seed <n>', 'seed for drawing calibration sequences', 'MOP_PRUNE_SEED').argParser(parseIntArg(0)).default(0))
    .addOption(envOption('--step-layers <x>', 'step budget in average layers (smaller interleaves depth and width)', 'MOP_STEP_LAYERS').argParser(parseFloatArg).default(1))
    .addOption(envOption('--depth-unit <unit>', 'depth branch removes whole layers (layer) or single attention / MLP sub-blocks (sublayer)', 'MOP_DEPTH_UNIT').default('layer'))
    .addOption(envOption('--width-split <mode>', 'width budget: param-share (attention vs MLP by parameter share) or global', 'MOP_WIDTH_SPLIT').default('param-share'))
    .addOption(envOption('--width-normalize <mode>', 'width scores normalised per layer (layer) or raw (none)', 'MOP_WIDTH_NORMALIZE').default('layer'))
    .addOption(envOption('--threads <n>', 'intra-op threads (default: all cores)', 'MOP_THREADS').argParser(parseIntArg(1)))
    .addOption(deviceOption())
    .addOption(envOption('-o, --out <dir>', 'output directory for the pruned model and report.json', 'MOP_OUT').makeOptionMandatory())
    .option('-q, --quiet', 'no progress output')
    .action(async (o) => {
      const common = {
        target: o.target as number,
        strategy: o.strategy as Strategy,
        criterion: o.criterion as SelectionCriterion,
        importance: o.importance as string,
        stepLayers: o.stepLayers as number,
        depthUnit: o.depthUnit,
        widthSplit: o.widthSplit,
        widthNormalize: o.widthNormalize,
      };
      validateMopOptions(common); // fail before loading anything
      const device = await resolveDeviceArg(o.device);
      const modelPath: string = o.model ?? defaultModelPath();
      const model = await loadModel(modelPath, o.tokenizer ? { tokenizerPath: o.tokenizer } : {});
      const tokenizer = createTokenizer(model.tokenizer);
      checkTokenizerMatchesModel(tokenizer, model.spec.vocabSize, model.path);
      const calibration = await loadCalibration(tokenizer, { ...(o.calibration !== undefined && { path: o.calibration }), samples: o.samples, seqLen: o.seqLen, seed: o.seed });
      const referenceBlocks = await readReferenceBlocks(modelPath);

      const ac = new AbortController();
      const onSigint = () => ac.abort();
      process.once('SIGINT', onSigint);
      const progress = o.quiet ? undefined : progressReporter();
      try {
        const result = await runMop(model, {
          ...common,
          calibration,
          seed: o.seed,
          modelPath,
          ...(referenceBlocks !== undefined && { referenceBlocks }),
          ...(o.threads !== undefined && { threads: o.threads }),
          device,
          ...(progress && { onProgress: progress.update }),
          signal: ac.signal,
        });
        progress?.stop();
        await writePrunedModel(o.out, result.model, model, result.report);
        process.stderr.write(`${summarizeReport(result.report)}\n`);
        process.stdout.write(`wrote ${o.out} (model.safetensors, config.json, tokenizer, report.json)\n`);
      } catch (e) {
        progress?.stop();
        if (ac.signal.aborted) {
          process.stderr.write('mop: prune cancelled\n');
          process.exitCode = 130;
          return;
        }
        throw e;
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}

/** A progress bar with an ETA on a terminal; one plain line per step elsewhere (logs, CI). */
function progressReporter(): { update: (p: MopProgress) => void; stop: () => void } {
  if (process.stderr.isTTY) {
    // Our own ETA from whole steps (cli-progress's own shows "NF" while a step's passes run).
    const bar = new cliProgress.SingleBar(
      { format: 'pruning [{bar}] {value}/{total} steps | ETA {etaText} | {message}', hideCursor: true, stream: process.stderr },
      cliProgress.Presets.shades_classic,
    );
    const t0 = performance.now();
    let started = false;
    const eta = (p: MopProgress): string => {
      if (p.step === 0) return '…';
      const s = Math.max(0, ((performance.now() - t0) / 1000 / p.step) * (p.totalEstimate - p.step));
      return s >= 60 ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`;
    };
    return {
      update: (p) => {
        const payload = { message: p.message, etaText: eta(p) };
        if (!started) {
          bar.start(Math.max(p.totalEstimate, 1), p.step, payload);
          started = true;
          return;
        }
        bar.setTotal(Math.max(p.totalEstimate, p.step, 1));
        bar.update(p.step, payload);
      },
      stop: () => {
        if (started) bar.stop();
        started = false;
      },
    };
  }
  let last = '';
  return {
    update: (p) => {
      if (p.message === last) return;
      last = p.message;
      process.stderr.write(`[prune ${p.step}/${p.totalEstimate}] ${p.message}\n`);
    },
    stop: () => undefined,
  };
}
