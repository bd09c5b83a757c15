/**
 * Building a ServedVariant: a model (dense as loaded, or pruned in memory) with its own session
 * and scheduler. The start-up model and every pruned variant go through here, so a pruned model is
 * served exactly like a dense one.
 */
import { createDecoderSession } from '../runtime/engine/create-session.ts';
import type { DecoderSession } from '../runtime/engine/decoder-session.ts';
import { BatchScheduler } from '../runtime/engine/scheduler.ts';
import type { LoadedModel } from '../runtime/model/loaded-model.ts';
import { parameterCounts } from '../runtime/model/spec.ts';
import type { Tokenizer } from '../runtime/tokenizer/types.ts';
import type { ChatTemplate } from './chat-template.ts';
import type { ServerConfig } from './config.ts';
import type { ServedVariant } from './registry.ts';

export type SchedulingConfig = Pick<ServerConfig, 'maxQueue' | 'prefillChunk' | 'requestTimeoutMs'>;

export interface VariantParts {
  id: string;
  model: LoadedModel;
  tokenizer: Tokenizer;
  session: DecoderSession;
  chatTemplate: ChatTemplate;
  compressionRatio: number;
}

export function createVariant(parts: VariantParts, config: SchedulingConfig): ServedVariant {
  return {
    ...parts,
    scheduler: new BatchScheduler(parts.session, parts.tokenizer, {
      maxQueue: config.maxQueue,
      prefillChunk: config.prefillChunk,
      requestTimeoutMs: config.requestTimeoutMs,
    }),
    parameters: parameterCounts(parts.model.spec).total,
    created: Math.floor(Date.now() / 1000),
  };
}

/** A new session for `model` with the same batch, context, device and threads as `like`. */
export function sessionLike(like: DecoderSession, model: Pick<LoadedModel, 'spec' | 'weights'>, threads: number | undefined): Promise<DecoderSession> {
  return createDecoderSession(model.spec, model.weights, {
    maxBatch: like.maxBatch,
    maxContext: like.maxContext,
    prefillChunk: like.prefillChunk,
    target: like.target,
    ...(threads !== undefined && { threads }),
  });
}
