import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GenerationEvent, GenerationRequest } from '../../src/runtime/engine/sequence.ts';
import { Fanout } from '../../src/server/fanout.ts';
import { toApiError } from '../../src/server/service-errors.ts';
import { InvalidRequestError } from '../../src/runtime/engine/errors.ts';

/** A variant whose every generation yields two tokens and a stop, and metrics that record the outcome. */
function fakes() {
  const outcomes: string[] = [];
  const events: GenerationEvent[] = [
    { type: 'token', token: 5, text: 'a' },
    { type: 'token', token: 6, text: 'b' },
    { type: 'finish', reason: 'stop', text: '', promptTokens: 1, completionTokens: 2 },
  ];
  const variant = {
    id: 'v',
    scheduler: {
      submit: () => ({
        async *[Symbol.asyncIterator]() {
          yield* events;
        },
      }),
    },
  };
  const metrics = { track: (_id: string, h: AsyncIterable<GenerationEvent>) => h, countRequest: (_id: string, outcome: string) => outcomes.push(outcome) };
  const request = { promptTokens: [1], maxTokens: 2 } as unknown as GenerationRequest;
  const fanout = () => new Fanout(variant as never, metrics as never, [request, request], new AbortController().signal);
  return { outcomes, fanout };
}

describe('a non-streamed answer is counted once, by how it ended', () => {
  it('built: success, and the response is what the builder made', async () => {
    const { outcomes, fanout } = fakes();
    const text = await fanout().collect((evs) => evs.map((e) => e.map((x) => x.text).join('')).join('|'));
    assert.equal(text, 'ab|ab');
    assert.deepEqual(outcomes, ['success']);
  });

  it('a response that cannot be built (too large for one string) is counted as an error and answered 500, not counted as a success', async () => {
    const { outcomes, fanout } = fakes();
    const tooLong = new RangeError('Invalid string length');
    await assert.rejects(
      fanout().collect(() => {
        throw tooLong;
      }),
      tooLong,
    );
    assert.deepEqual(outcomes, ['error']);
    const lines: string[] = [];
    const api = toApiError(tooLong, (l) => lines.push(l));
    assert.equal(api.status, 500);
    assert.ok(!api.message.includes('Invalid string length'), 'no internals to the client');
    assert.match(lines.join('\n'), /Invalid string length/);
  });

  it("the engine's refusal of a request is its 400; any other RangeError (an engine invariant broken) is a logged 500 that names nothing internal", () => {
    const refused = toApiError(new InvalidRequestError('the prompt has no tokens'), () => undefined);
    assert.equal(refused.status, 400);
    assert.equal(refused.message, 'the prompt has no tokens');
    const lines: string[] = [];
    const broken = toApiError(new RangeError('slot 3 already holds 17 tokens'), (l) => lines.push(l));
    assert.equal(broken.status, 500);
    assert.ok(!broken.message.includes('slot 3'), broken.message);
    assert.match(lines.join('\n'), /slot 3 already holds 17 tokens/);
  });
});
