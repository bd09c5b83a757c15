/**
 * Request fields → the engine's SamplingParams. The schema already bounds each field to OpenAI's
 * range; the engine's own validation runs too, and its SamplingParamsError is reported under the
 * wire name of the field (topP → top_p).
 */
import {
  defaultSamplingParams,
  type SamplingParams,
  SamplingParamsError,
  validateSamplingParams,
} from '../runtime/engine/sampling-params.ts';
import { deriveSeed } from '../runtime/engine/rng.ts';
import { invalidRequest } from './errors.ts';

/** The sampling fields both endpoints share, as they arrive (null = omitted). */
export interface WireSampling {
  temperature?: number | null | undefined;
  top_p?: number | null | undefined;
  top_k?: number | null | undefined;
  min_p?: number | null | undefined;
  presence_penalty?: number | null | undefined;
  frequency_penalty?: number | null | undefined;
  repetition_penalty?: number | null | undefined;
  seed?: number | null | undefined;
}

const wireName: Record<keyof SamplingParams, string> = {
  temperature: 'temperature',
  topK: 'top_k',
  topP: 'top_p',
  minP: 'min_p',
  seed: 'seed',
  presencePenalty: 'presence_penalty',
  frequencyPenalty: 'frequency_penalty',
  repetitionPenalty: 'repetition_penalty',
  logprobs: 'logprobs',
};

/**
 * The seed choice `choice` of a request with `seed` samples with: choice 0 the seed itself (so
 * `n: 1` is the seed's own output), choice j > 0 a 64-bit mix of seed and j. The n choices differ
 * from one another, the same request returns the same choices every time, and every safe-integer
 * seed the schema accepts works for every n.
 */
export function choiceSeed(seed: number, choice: number): number {
  // A seed outside the range is left for validateSamplingParams to refuse under its wire name.
  return choice === 0 || !Number.isSafeInteger(seed) ? seed : deriveSeed(seed, choice);
}

/** Sampling for choice `choice` of a request (with a seed: see choiceSeed). */
export function samplingParams(wire: WireSampling, logprobs: number | undefined, choice: number): SamplingParams {
  const seed = wire.seed ?? undefined;
  const p = defaultSamplingParams({
    temperature: wire.temperature ?? undefined,
    topP: wire.top_p ?? undefined,
    topK: wire.top_k ?? undefined,
    minP: wire.min_p ?? undefined,
    presencePenalty: wire.presence_penalty ?? undefined,
    frequencyPenalty: wire.frequency_penalty ?? undefined,
    repetitionPenalty: wire.repetition_penalty ?? undefined,
    seed: seed === undefined ? undefined : choiceSeed(seed, choice),
    logprobs,
  });
  try {
    return validateSamplingParams(p);
  } catch (e) {
    if (e instanceof SamplingParamsError) throw invalidRequest(e.message, wireName[e.field]);
    throw e;
  }
}

/** `stop` as a list, empty strings dropped (they would match everywhere). */
export function stopList(stop: string | readonly string[] | null | undefined): string[] {
  if (stop === null || stop === undefined) return [];
  return (typeof stop === 'string' ? [stop] : [...stop]).filter((s) => s.length > 0);
}
