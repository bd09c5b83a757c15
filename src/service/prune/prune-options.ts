/**
 * The one table of prune options. `mop prune` flags, `mop serve --prune-*` flags, the
 * `POST /admin/prune` body and the environment variables are all generated from it, so each option
 * has one name (kebab-case on the command line, snake_case in JSON, MOP_PRUNE_* in the
 * environment), one default and one validation everywhere.
 */
import { MopInputError } from '../../mop/errors.ts';
import { importanceCriteria } from '../../mop/importance.ts';
import { depthRules } from '../../mop/depth-rule.ts';
import { MAX_TARGET, strategies } from '../../mop/mop.ts';
import { recoveryModes } from '../../mop/mop-recovery.ts';
import { recoveryLosses } from '../../runtime/train/recover.ts';
import { selectionCriteria } from '../../mop/selection.ts';
import { budgetUnits } from '../../mop/prune-cost.ts';

/** A full prune recipe: everything that decides what a prune produces. */
export interface PruneRecipe {
  /** Fraction of the reference block parameters to remove, in (0, 0.9]. */
  target: number;
  strategy: 'mop' | 'depth' | 'width';
  criterion: 'ppl' | 'kl' | 'cosine' | 'random';
  importance: string;
  /** Calibration text file; undefined = the bundled TinyStories slice. */
  calibration: string | undefined;
  samples: number;
  seqLen: number;
  seed: number;
  stepLayers: number;
  depthUnit: 'layer' | 'sublayer';
  widthSplit: 'param-share' | 'global';
  widthNormalize: 'layer' | 'none';
  /** A pruned layer keeps a multiple of this many MLP neurons (1 = any count). */
  widthMultiple: number;
  /** Every kept layer keeps the same heads and MLP width (a plain config other tools load); depth still free. */
  uniform: boolean;
  /** What the target and step budgets count: block parameters, or the engine's measured decode-step time. */
  budget: 'params' | 'latency';
  /** How the depth branch ranks layers: block-influence score or the paper's third-to-last rule. */
  depthRule: 'score' | 'third-to-last';
  /** Recovery fine-tuning of every candidate and of the result: none, LoRA adapters or all weights. */
  recovery: 'none' | 'lora' | 'full';
  /** Steps of each candidate's brief recovery before it is scored. */
  recoverySteps: number;
  /** Steps of the recovery after the target is reached. */
  finalRecoverySteps: number;
  /** The per-candidate budget in trained tokens instead of steps (⌈tokens / (batch × seq len)⌉ steps). */
  recoveryTokens: number | undefined;
  finalRecoveryTokens: number | undefined;
  /** The per-candidate budget in seconds of training instead of steps. */
  recoverySeconds: number | undefined;
  finalRecoverySeconds: number | undefined;
  recoveryLr: number;
  recoveryLoss: 'ce' | 'kd';
  /** With kd: share of the distillation term (the rest is next-token cross-entropy). */
  recoveryKdAlpha: number;
  /**
   * Recovery text file (.txt, or .jsonl of text or chat records); `self` = text sampled from the
   * model being pruned; undefined = the bundled TinyStories recovery slices (not the calibration text).
   */
  recoveryData: string | undefined;
  /** Which tokens recovery trains on: all, or only the assistant turns of chat records. */
  recoveryLossTokens: 'all' | 'assistant';
  /** With `recovery-data self`: tokens sampled from the model. */
  recoverySelfTokens: number;
  recoveryBatch: number;
  recoverySeqLen: number;
  recoveryLoraRank: number;
}

type Kind =
  | { kind: 'fraction'; max: number }
  | { kind: 'int'; min: number; max: number }
  | { kind: 'number'; min: number; max: number }
  | { kind: 'choice'; choices: readonly string[] }
  | { kind: 'text' }
  | { kind: 'flag' };

export interface PruneOption {
  key: keyof PruneRecipe;
  /** Kebab-case name: `mop prune --<name>`, `mop serve --prune-<name>`. */
  name: string;
  /** The POST /admin/prune body field. */
  json: string;
  /** The environment variable (both commands). */
  env: string;
  description: string;
  /** undefined: required (target) or absent by default (calibration). */
  default: PruneRecipe[keyof PruneRecipe] | undefined;
  type: Kind;
}

const option = (key: keyof PruneRecipe, name: string, description: string, type: Kind, def: PruneRecipe[keyof PruneRecipe] | undefined): PruneOption => ({
  key,
  name,
  json: name.replaceAll('-', '_'),
  env: `MOP_PRUNE_${name.replaceAll('-', '_').toUpperCase()}`,
  description,
  default: def,
  type,
});

export const pruneOptions: readonly PruneOption[] = [
  option('target', 'target', `fraction of transformer-block parameters to remove, in (0, ${MAX_TARGET}]`, { kind: 'fraction', max: MAX_TARGET }, undefined),
  option('strategy', 'strategy', 'mop, depth (layers only) or width (heads and neurons only)', { kind: 'choice', choices: strategies }, 'mop'),
  option('criterion', 'criterion', 'candidate selection: ppl, kl or cosine', { kind: 'choice', choices: selectionCriteria }, 'ppl'),
  option('importance', 'importance', 'structure importance: amp or magnitude', { kind: 'choice', choices: Object.keys(importanceCriteria) }, 'amp'),
  option('calibration', 'calibration', 'calibration text: a .txt file or a .jsonl file of {"text"} or chat {"messages"} records (default: bundled TinyStories slice)', { kind: 'text' }, undefined),
  option('samples', 'samples', 'calibration sequences', { kind: 'int', min: 1, max: 4096 }, 32),
  option('seqLen', 'seq-len', 'tokens per calibration sequence', { kind: 'int', min: 2, max: 8192 }, 128),
  option('seed', 'seed', 'seed for drawing calibration sequences', { kind: 'int', min: 0, max: 2 ** 31 - 1 }, 0),
  option('stepLayers', 'step-layers', 'step budget in average layers (smaller interleaves depth and width)', { kind: 'number', min: 0, max: 8 }, 1),
  option('depthUnit', 'depth-unit', 'depth branch removes whole layers (layer) or single attention / MLP sub-blocks (sublayer)', { kind: 'choice', choices: ['layer', 'sublayer'] }, 'layer'),
  option('widthSplit', 'width-split', 'width budget: param-share (attention vs MLP by parameter share) or global', { kind: 'choice', choices: ['param-share', 'global'] }, 'param-share'),
  option('widthNormalize', 'width-normalize', 'width scores normalised per layer (layer) or raw (none)', { kind: 'choice', choices: ['layer', 'none'] }, 'layer'),
  // Hardware-friendly shapes and latency-aware budgets. Default: docs/width-report.md.
  option('widthMultiple', 'width-multiple', 'a pruned layer keeps a multiple of this many MLP neurons (KV groups always stay whole); 32 = whole int8/int4 blocks', { kind: 'int', min: 1, max: 1024 }, 1),
  option('uniform', 'uniform', 'every kept layer keeps the same heads and MLP width, with attention and MLP (depth still chosen freely): the Hugging Face output is a plain config with no custom keys, which transformers, vLLM and llama.cpp load', { kind: 'flag' }, false),
  option('budget', 'budget', "what the target counts: params (block parameters, the paper's measure) or latency (decode-step time measured on the serving engine)", { kind: 'choice', choices: budgetUnits }, 'params'),
  // Recovery fine-tuning. Defaults: the recipe bench:quality measured best (docs/quality-report.md).
  option('depthRule', 'depth-rule', "depth branch ranks layers by block-influence score (score) or removes the third-to-last layer (third-to-last, the paper's rule)", { kind: 'choice', choices: depthRules }, 'score'),
  option('recovery', 'recovery', 'recovery fine-tuning of each candidate and of the result: none, lora or full', { kind: 'choice', choices: recoveryModes }, 'full'),
  option('recoverySteps', 'recovery-steps', 'recovery steps per candidate, before it is scored (0 = score candidates as cut)', { kind: 'int', min: 0, max: 100_000 }, 25),
  // 1000: 1.06× dense at 40% with the default recovery text (bundled + sampled) in about 3 minutes; 3000 reach 1.02× in about 6 (docs/recovery-budget-report.md).
  option('finalRecoverySteps', 'final-recovery-steps', 'recovery steps after the target is reached', { kind: 'int', min: 0, max: 1_000_000 }, 1000),
  option('recoveryTokens', 'recovery-tokens', 'per-candidate recovery budget in trained tokens, instead of --recovery-steps (steps = ⌈tokens / (recovery-batch × recovery-seq-len)⌉)', { kind: 'int', min: 1, max: 1e12 }, undefined),
  option('finalRecoveryTokens', 'final-recovery-tokens', 'final recovery budget in trained tokens, instead of --final-recovery-steps', { kind: 'int', min: 1, max: 1e12 }, undefined),
  option('recoverySeconds', 'recovery-seconds', 'per-candidate recovery budget in seconds of training, instead of --recovery-steps (as many steps as fit; the step count depends on the machine)', { kind: 'number', min: 0, max: 86_400 }, undefined),
  option('finalRecoverySeconds', 'final-recovery-seconds', 'final recovery budget in seconds of training, instead of --final-recovery-steps', { kind: 'number', min: 0, max: 604_800 }, undefined),
  option('recoveryLr', 'recovery-lr', 'peak recovery learning rate (AdamW, warm-up then cosine decay)', { kind: 'number', min: 0, max: 1 }, 2e-3),
  option('recoveryLoss', 'recovery-loss', 'recovery loss: ce (next-token cross-entropy) or kd (distillation from the unpruned model, mixed with ce)', { kind: 'choice', choices: recoveryLosses }, 'kd'),
  option('recoveryKdAlpha', 'recovery-kd-alpha', 'with kd: share of the distillation term, in (0, 1] (the rest is cross-entropy)', { kind: 'number', min: 0, max: 1 }, 0.75),
  option(
    'recoveryData',
    'recovery-data',
    'recovery text: a .txt file, a .jsonl file of {"text"} or chat {"messages"} records (rendered with the model\'s chat template), or self (text sampled from the model being pruned); default: the bundled TinyStories recovery slices, disjoint from the calibration and held-out text',
    { kind: 'text' },
    undefined,
  ),
  option('recoveryLossTokens', 'recovery-loss-tokens', 'which tokens recovery trains on: all, or assistant (only the assistant turns of chat records)', { kind: 'choice', choices: ['all', 'assistant'] }, 'all'),
  // Default: docs/recovery-budget-report.md (the bundled text plus 524,288 sampled tokens: 1.06× dense at 40% vs 1.19× on the bundled text alone; 131,072 tokens of self text alone recovered 6.4% worse than 524,288, docs/recovery-data-report.md).
  option('recoverySelfTokens', 'recovery-self-tokens', 'tokens sampled from the model being pruned (temperature 1, seeded; once per model and recipe with a model store) and added to the recovery text, or all of it with --recovery-data self; 0 = none (not added with --recovery-loss-tokens assistant)', { kind: 'int', min: 0, max: 100_000_000 }, 524_288),
  option('recoveryBatch', 'recovery-batch', 'recovery sequences per step', { kind: 'int', min: 1, max: 1024 }, 16),
  option('recoverySeqLen', 'recovery-seq-len', 'tokens trained per recovery sequence', { kind: 'int', min: 2, max: 8192 }, 128),
  option('recoveryLoraRank', 'recovery-lora-rank', 'LoRA rank with --recovery lora (at most the narrowest adapted projection)', { kind: 'int', min: 1, max: 4096 }, 8),
];

/** The recovery-data value that samples recovery text from the model itself: not a file. */
export const SELF_RECOVERY_DATA = 'self';

/** Whether a text option's value names a file (the server checks and hashes those). */
export function namesFile(o: PruneOption, value: unknown): value is string {
  return o.type.kind === 'text' && typeof value === 'string' && !(o.key === 'recoveryData' && value === SELF_RECOVERY_DATA);
}

/** Defaults of every option that has one. */
export function defaultPruneSettings(): Omit<PruneRecipe, 'target'> {
  const out: Record<string, unknown> = {};
  for (const o of pruneOptions) if (o.key !== 'target') out[o.key] = o.default;
  return out as Omit<PruneRecipe, 'target'>;
}

const FLAG_WORDS: Record<string, boolean> = { true: true, '1': true, false: false, '0': false };

/** How a command line writes an option's value after its name (` <n>`; a flag takes an optional one). */
export function flagValueSyntax(o: PruneOption): string {
  const t = o.type.kind;
  return t === 'flag' ? '[bool]' : t === 'choice' ? '<name>' : t === 'text' ? '<file>' : '<n>';
}

/** One value, from a string (flag, env) or a JSON value; throws MopInputError naming `where` and what is accepted. */
export function parsePruneValue(o: PruneOption, raw: unknown, where: string, json = false): PruneRecipe[keyof PruneRecipe] {
  const fail = (expected: string): never => {
    throw new MopInputError(`${where}: expected ${expected}, got ${JSON.stringify(raw)}`);
  };
  const t = o.type;
  if (t.kind === 'flag') {
    // A bare flag is `true`; flags and environment variables may also say true/false or 1/0.
    if (typeof raw === 'boolean') return raw;
    if (!json && typeof raw === 'string' && FLAG_WORDS[raw.toLowerCase()] !== undefined) return FLAG_WORDS[raw.toLowerCase()]!;
    return fail(json ? 'true or false' : 'true, false, 1 or 0');
  }
  if (t.kind === 'text' || t.kind === 'choice') {
    if (typeof raw !== 'string' || raw === '') return fail(t.kind === 'text' ? 'a non-empty string' : `one of ${t.choices.join(', ')}`);
    if (t.kind === 'choice' && !t.choices.includes(raw)) throw new MopInputError(`${where}: unknown ${o.name} '${raw}'; choose one of: ${t.choices.join(', ')}`);
    return raw as PruneRecipe[keyof PruneRecipe];
  }
  // Flags and environment variables are text; a JSON body must send numbers as numbers.
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' && !json ? Number(raw) : NaN;
  if (t.kind === 'fraction') {
    if (!(Number.isFinite(n) && n > 0 && n <= t.max)) fail(`a fraction in (0, ${t.max}]`);
  } else if (t.kind === 'int') {
    if (!(Number.isInteger(n) && n >= t.min && n <= t.max)) fail(`an integer in [${t.min}, ${t.max}]`);
  } else if (!(Number.isFinite(n) && n > t.min && n <= t.max)) fail(`a number in (${t.min}, ${t.max}]`);
  return n;
}

/**
 * A recipe from raw values keyed by option key (strings from flags/env, or JSON values), over
 * `base` defaults. Unknown keys are the caller's business (the JSON body checks them itself).
 */
export function resolvePruneRecipe(raw: Partial<Record<keyof PruneRecipe, unknown>>, base: Partial<PruneRecipe>, label: (o: PruneOption) => string, json = false): PruneRecipe {
  const out: Record<string, unknown> = { ...defaultPruneSettings(), ...base };
  for (const o of pruneOptions) {
    const v = raw[o.key];
    if (v !== undefined) out[o.key] = parsePruneValue(o, v, label(o), json);
  }
  if (out.target === undefined) throw new MopInputError(`${label(pruneOptions[0]!)}: a target is required, e.g. 0.4`);
  return out as unknown as PruneRecipe;
}

/** Names as a command-line user sees them: `--seq-len / MOP_PRUNE_SEQ_LEN` (with a flag prefix for `mop serve`). */
export const flagLabel =
  (prefix = '') =>
  (o: PruneOption): string =>
    `--${prefix}${o.name} / ${o.env}`;

/** Names as an API client sees them: the JSON field. */
export const jsonLabel = (o: PruneOption): string => o.json;
