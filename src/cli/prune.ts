import { promises as fs } from 'node:fs';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { defaultModelPath, loadModel } from '../runtime/model/load.ts';
import { MopInputError } from '../mop/errors.ts';
import { writePrunedModel } from '../mop/export.ts';
import type { MopProgress } from '../mop/mop.ts';
import { readReferenceBlocks, summarizeReport } from '../mop/report.ts';
import { parameterCounts } from '../runtime/model/spec.ts';
import { digestWeights, ModelStore } from '../service/model-store/index.ts';
import { pruneStoreKey } from '../service/prune/prune-store-key.ts';
import { flagLabel, type PruneRecipe, pruneOptions, resolvePruneRecipe, flagValueSyntax } from '../service/prune/prune-options.ts';
import { runPrune, validateRecipe } from '../service/prune/run-prune.ts';
import { describeEstimate, estimatePruneCost } from '../service/prune/prune-estimate.ts';
import { storeSelfTextCache } from '../service/prune/self-text-store.ts';
import { deviceOption, envOption, parseFloatArg, parseIntArg, resolveDeviceArg } from './options.ts';
import { parseDtypeRequest, targetFor } from '../runtime/device/device.ts';

/**
 * `mop prune`: MoP (or a baseline) to a target compression; writes a loadable Hugging Face
 * directory and report.json into --out. The prune flags come from the shared prune option table
 * (the same names, defaults and MOP_PRUNE_* variables as `mop serve --prune-*` and
 * POST /admin/prune), and the prune itself is the same function the server runs.
 */
export function registerPruneCommand(program: Command): void {
  const cmd = program
    .command('prune')
    .description('prune a model with MoP (or a depth-only / width-only baseline) and write it with its report')
    .addOption(envOption('-m, --model <path>', 'checkpoint or pruned directory (default: bundled stories260K)', 'MOP_MODEL'))
    .addOption(envOption('--tokenizer <path>', 'tokenizer file for llama2.c checkpoints', 'MOP_TOKENIZER'));
  for (const o of pruneOptions) {
    // Values are checked by the table in the action, so a bad one is a one-line `mop: error:`.
    const opt = envOption(`--${o.name} ${flagValueSyntax(o)}`, o.description, o.env);
    if (o.default !== undefined) opt.default(o.default);
    if (o.key === 'target') opt.makeOptionMandatory();
    cmd.addOption(opt);
  }
  cmd
    .addOption(envOption('--threads <n>', 'intra-op threads (default: all cores)', 'MOP_THREADS').argParser(parseIntArg(1)))
    .addOption(deviceOption())
    .addOption(envOption('--dtype <type>', 'with --budget latency: the weight type the result will be served in (float32, int8, int4); the step-time profile is measured in it', 'MOP_DTYPE').default('float32'))
    .addOption(envOption('-o, --out <dir>', 'output directory for the pruned model and report.json', 'MOP_OUT'))
    .addOption(envOption('--model-store <dir>', "also (or instead of --out) put the result into this model store, under the key a server's identical prune looks up", 'MOP_MODEL_STORE'))
    .option('-q, --quiet', 'no progress output')
    .option('--estimate', "print the recipe's cost on this machine (candidates, training tokens, predicted wall time and peak memory, from step times measured on the model's shape) and exit without pruning")
    .addOption(envOption('--memory-limit <GiB>', "memory the prune may use at its peak (default: the machine's); a recipe that needs more is refused with the options that fit", 'MOP_MEMORY_LIMIT').argParser(parseFloatArg))
    .action(async (o) => {
      const raw: Partial<Record<keyof PruneRecipe, unknown>> = {};
      for (const opt of pruneOptions) raw[opt.key] = o[opt.key];
      const recipe = resolvePruneRecipe(raw, {}, flagLabel());
      validateRecipe(recipe); // fail before loading anything
      if (!o.estimate && o.out === undefined && o.modelStore === undefined) throw new MopInputError('say where the pruned model goes: --out <dir> / MOP_OUT, --model-store <dir> / MOP_MODEL_STORE, or both');
      const device = await resolveDeviceArg(o.device);
      const dtype = parseDtypeRequest(o.dtype);
      // The profile of a latency budget runs the serving graph: CPU for quantized weights.
      const servingTarget = targetFor(dtype === 'int8' || dtype === 'int4' ? 'cpu' : device, dtype);
      const modelPath: string = o.model ?? defaultModelPath();
      const model = await loadModel(modelPath, o.tokenizer ? { tokenizerPath: o.tokenizer } : {});
      const referenceBlocks = await readReferenceBlocks(modelPath);
      const memoryLimit = o.memoryLimit !== undefined ? o.memoryLimit * 2 ** 30 : undefined;
      if (o.estimate) {
        // With a store: text a prune of this model already sampled for the recipe costs nothing.
        const selfTextCache = o.modelStore === undefined ? undefined : storeSelfTextCache(await ModelStore.open(o.modelStore), digestWeights(model.spec, model.weights));
        const estimate = await estimatePruneCost(model, recipe, { threads: o.threads, device, memoryLimit, selfTextCache });
        process.stdout.write(`${describeEstimate(estimate)}\n`);
        return;
      }
      // The same key a server computes for this prune of the same checkpoint (the Helm hook relies on it).
      const store = o.modelStore === undefined ? undefined : await ModelStore.open(o.modelStore);
      const stored = store && (await pruneStoreKey(digestWeights(model.spec, model.weights), recipe, referenceBlocks ?? parameterCounts(model.spec).blocks, servingTarget));
      // An entry counts only if its files still hold what was recorded (same size is not enough).
      const intact = store && stored && (await store.verify(stored.key, { contents: true })).ok;
      const hit = intact ? await store.get(stored.key).catch(() => undefined) : undefined;
      if (hit) {
        process.stdout.write(`model store ${o.modelStore}: entry ${hit.key} is already there; nothing to prune\n`);
        if (o.out !== undefined) {
          await fs.cp(hit.dir, o.out, { recursive: true, filter: (src) => !/[\\/](entry\.json|last-used)$/.test(src) });
          process.stdout.write(`wrote ${o.out} (copied from the store)\n`);
        }
        return;
      }

      const ac = new AbortController();
      const onSigint = () => ac.abort();
      process.once('SIGINT', onSigint);
      const progress = o.quiet ? undefined : progressReporter();
      try {
        const result = await runPrune({
          model,
          recipe,
          ...(referenceBlocks !== undefined && { referenceBlocks }),
          ...(o.threads !== undefined && { threads: o.threads }),
          device,
          servingTarget,
          ...(progress && { onProgress: progress.update }),
          signal: ac.signal,
          ...(memoryLimit !== undefined && { memoryLimit }),
          // Text sampled for --recovery-data self is kept in the store (without one it is sampled each time).
          ...(store && stored && { selfTextCache: storeSelfTextCache(store, stored.sourceDigest) }),
        });
        progress?.stop();
        process.stderr.write(`${summarizeReport(result.report)}\n`);
        if (store && stored) {
          const put = await store.put(stored.key, (dir) => writePrunedModel(dir, result.model, model, result.report), { sourceDigest: stored.sourceDigest, recipe: stored.recipe });
          process.stdout.write(`model store ${o.modelStore}: entry ${put.key} ${put.outcome === 'written' ? 'written' : 'was written meanwhile by another process'}\n`);
        }
        if (o.out !== undefined) {
          await writePrunedModel(o.out, result.model, model, result.report);
          process.stdout.write(`wrote ${o.out} (model.safetensors, config.json, tokenizer, report.json)\n`);
        }
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
      if (p.etaSeconds === undefined && p.step === 0) return '…';
      // The prune's own ETA (the estimate's time model on this run's measured speed), else whole steps.
      const s = p.etaSeconds ?? Math.max(0, ((performance.now() - t0) / 1000 / p.step) * (p.totalEstimate - p.step));
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
      // A recovery reports every training step: in a log, a tenth of the run at a time is enough.
      const r = p.recovery;
      if (r && r.step !== r.steps && r.step % Math.max(1, Math.round(r.steps / 10)) !== 0) return;
      if (p.message === last) return;
      last = p.message;
      process.stderr.write(`[prune ${p.step}/${p.totalEstimate}] ${p.message}\n`);
    },
    stop: () => undefined,
  };
}
