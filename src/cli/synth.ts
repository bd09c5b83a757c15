import { promises as fs } from 'node:fs';
import { type Command, InvalidArgumentError } from 'commander';
import type { SafetensorsDtype } from '../runtime/model/safetensors.ts';
import { syntheticPresets } from '../runtime/model/synthetic.ts';
import { isSyntheticPreset, writeSyntheticDirectory } from '../runtime/model/synthetic-directory.ts';
import { envOption, parseIntArg } from './options.ts';

const DTYPES: Record<string, SafetensorsDtype> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

/**
 * `mop synth`: write a synthetic LLaMA-shaped Hugging Face directory (random weights, made-up
 * vocabulary) with the benchmarks' generator, for load and speed work without a real checkpoint.
 */
export function registerSynthCommand(program: Command): void {
  program
    .command('synth')
    .description('write a synthetic LLaMA-shaped Hugging Face model (random weights, synthetic vocabulary)')
    .addOption(envOption('--preset <name>', `model shape: ${Object.keys(syntheticPresets).join(', ')}`, 'MOP_SYNTH_PRESET').makeOptionMandatory())
    .addOption(envOption('-o, --out <dir>', 'output directory (must not exist or be empty)', 'MOP_SYNTH_OUT').makeOptionMandatory())
    .addOption(envOption('--seed <n>', 'seed of the random weights (1 = the benchmarks\' models)', 'MOP_SYNTH_SEED').argParser(parseIntArg(0, 2 ** 32 - 1)).default(1))
    .addOption(envOption('--dtype <type>', 'safetensors storage: float32, float16 or bfloat16', 'MOP_SYNTH_DTYPE').default('float32'))
    .action(async (o) => {
      const preset: string = o.preset;
      if (!isSyntheticPreset(preset)) throw new InvalidArgumentError(`unknown preset '${preset}'; one of ${Object.keys(syntheticPresets).join(', ')}`);
      const dtype = DTYPES[o.dtype as string];
      if (!dtype) throw new InvalidArgumentError(`unknown dtype '${o.dtype}'; one of ${Object.keys(DTYPES).join(', ')}`);
      await refuseExistingOutput(o.out);
      const started = performance.now();
      const { spec, parameters } = await writeSyntheticDirectory(o.out, { preset, seed: o.seed, dtype });
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      process.stdout.write(`wrote ${o.out}: synthetic '${preset}', ${spec.layers.length} layers, hidden ${spec.hidden}, ${parameters.toLocaleString('en-US')} parameters, ${o.dtype}, seed ${o.seed} (${seconds} s)\n`);
    });
}

/** An existing file, or a directory with anything in it, is never overwritten. */
async function refuseExistingOutput(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await fs.readdir(dir);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTDIR') throw new InvalidArgumentError(`--out ${dir} exists and is not a directory`);
    throw e;
  }
  if (entries.length > 0) throw new InvalidArgumentError(`--out ${dir} is not empty; give a new or empty directory`);
}
