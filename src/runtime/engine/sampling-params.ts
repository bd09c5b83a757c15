/**
 * How one request turns logits into tokens. Field semantics follow the OpenAI API (temperature,
 * top_p, presence/frequency penalties, seed, top_logprobs) and vLLM/HF for the rest (top_k, min_p,
 * repetition_penalty), so request fields map onto these one to one.
 */
export interface SamplingParams {
  /** Divides logits before softmax. 0 = greedy (argmax, deterministic). Range [0, 100]. */
  temperature: number;
  /** Keep only the k most likely tokens. 0 or -1 = off. */
  topK: number;
  /** Keep the smallest most-likely set whose probability mass ≥ topP. Range (0, 1]; 1 = off. */
  topP: number;
  /** Drop tokens whose probability < minP × (probability of the most likely). Range [0, 1]; 0 = off. */
  minP: number;
  /** Makes sampling reproducible; unset = seeded from crypto random. A safe integer. */
  seed?: number;
  /** OpenAI: subtract this from a token's logit once it has been generated at least once. [-2, 2]. */
  presencePenalty: number;
  /** OpenAI: subtract this × (times generated) from a token's logit. [-2, 2]. */
  frequencyPenalty: number;
  /**
   * HF/vLLM: for every token in prompt or output, logit > 0 ? logit / p : logit × p. > 0; 1 = off.
   */
  repetitionPenalty: number;
  /** How many top alternatives to report with each token's logprob, 0..20; undefined = no logprobs. */
  logprobs?: number;
}

/** A parameter outside its valid range; `field` names it so an API layer can map it to a 400. */
export class SamplingParamsError extends Error {
  constructor(
    readonly field: keyof SamplingParams,
    message: string,
  ) {
    super(`invalid sampling parameter ${field}: ${message}`);
    this.name = 'SamplingParamsError';
  }
}

export const MAX_TEMPERATURE = 100;
export const MAX_LOGPROBS = 20;

/** The OpenAI defaults: temperature 1, every filter and penalty off, no logprobs. */
export function defaultSamplingParams(overrides: Partial<SamplingParams> = {}): SamplingParams {
  const defaults: SamplingParams = {
    temperature: 1,
    topK: 0,
    topP: 1,
    minP: 0,
    presencePenalty: 0,
    frequencyPenalty: 0,
    repetitionPenalty: 1,
  };
  // Drop explicit `undefined`s so they cannot erase a default.
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) (defaults as unknown as Record<string, unknown>)[key] = value;
  }
  return defaults;
}

/** Returns `p` unchanged if every field is in range; otherwise throws SamplingParamsError. */
export function validateSamplingParams(p: SamplingParams): SamplingParams {
  // Every comparison is written so NaN fails it (NaN compares false with everything).
  if (!(p.temperature >= 0 && p.temperature <= MAX_TEMPERATURE)) {
    throw new SamplingParamsError('temperature', `must be in [0, ${MAX_TEMPERATURE}] (0 = greedy), got ${p.temperature}`);
  }
  if (!(Number.isInteger(p.topK) && p.topK >= -1)) {
    throw new SamplingParamsError('topK', `must be an integer ≥ 0, or -1 / 0 for off, got ${p.topK}`);
  }
  if (!(p.topP > 0 && p.topP <= 1)) {
    throw new SamplingParamsError('topP', `must be in (0, 1] (1 = off), got ${p.topP}`);
  }
  if (!(p.minP >= 0 && p.minP <= 1)) {
    throw new SamplingParamsError('minP', `must be in [0, 1] (0 = off), got ${p.minP}`);
  }
  if (p.seed !== undefined && !Number.isSafeInteger(p.seed)) {
    throw new SamplingParamsError('seed', `must be a safe integer, got ${p.seed}`);
  }
  if (!(p.presencePenalty >= -2 && p.presencePenalty <= 2)) {
    throw new SamplingParamsError('presencePenalty', `must be in [-2, 2] (0 = off), got ${p.presencePenalty}`);
  }
  if (!(p.frequencyPenalty >= -2 && p.frequencyPenalty <= 2)) {
    throw new SamplingParamsError('frequencyPenalty', `must be in [-2, 2] (0 = off), got ${p.frequencyPenalty}`);
  }
  if (!(p.repetitionPenalty > 0 && Number.isFinite(p.repetitionPenalty))) {
    throw new SamplingParamsError('repetitionPenalty', `must be a finite number > 0 (1 = off), got ${p.repetitionPenalty}`);
  }
  if (p.logprobs !== undefined && !(Number.isInteger(p.logprobs) && p.logprobs >= 0 && p.logprobs <= MAX_LOGPROBS)) {
    throw new SamplingParamsError('logprobs', `must be an integer in [0, ${MAX_LOGPROBS}], got ${p.logprobs}`);
  }
  return p;
}

/** Temperature 0 or top-k 1 both mean "always the argmax", with no randomness at all. */
export function isGreedy(p: SamplingParams): boolean {
  return p.temperature === 0 || p.topK === 1;
}
