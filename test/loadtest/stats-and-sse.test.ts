import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mix32, parsePrompts, promptIndex } from '../../loadtest/prompts.ts';
import { SseParser } from '../../loadtest/sse.ts';
import { quantileSorted, summarize } from '../../loadtest/stats.ts';

describe('summarize', () => {
  it('gives p50/p90/p95/p99 interpolated between ranks, with mean, min and max', () => {
    const s = summarize(Array.from({ length: 101 }, (_, i) => 100 - i))!;
    assert.deepEqual(s, { count: 101, mean: 50, min: 0, max: 100, p50: 50, p90: 90, p95: 95, p99: 99 });
    const t = summarize([10, 20])!;
    assert.equal(t.p50, 15);
    assert.ok(Math.abs(t.p99 - 19.9) < 1e-9);
    assert.equal(summarize([]), null);
    assert.equal(summarize([7])!.p99, 7);
    assert.equal(quantileSorted([1, 2, 3, 4], 0.5), 2.5);
  });
});

describe('SseParser', () => {
  const all = (parts: string[]): string[] => {
    const p = new SseParser();
    return [...parts.flatMap((x) => p.push(x)), ...p.end()];
  };

  it('returns each event’s data however the bytes are split', () => {
    const text = 'data: {"a":1}\n\n: keep-alive comment\n\ndata: {"b":2}\r\n\r\ndata:[DONE]\n\n';
    const want = ['{"a":1}', '{"b":2}', '[DONE]'];
    assert.deepEqual(all([text]), want);
    for (let cut = 1; cut < text.length; cut++) assert.deepEqual(all([text.slice(0, cut), text.slice(cut)]), want, `cut at ${cut}`);
    assert.deepEqual(all(text.split('')), want, 'one character at a time');
  });

  it('joins multi-line data, ignores other fields, keeps an unterminated last event', () => {
    assert.deepEqual(all(['event: x\nid: 3\ndata: a\ndata: b\n\n', 'data: tail']), ['a\nb', 'tail']);
    assert.deepEqual(all(['data: x\r\rdata: y\r\r']), ['x', 'y'], 'bare CR line ends');
  });
});

describe('prompts', () => {
  it('skips blank lines and comments; round-robin cycles; random is seeded and spread out', () => {
    assert.deepEqual(parsePrompts('# c\n a \n\n b\r\n#d\nc'), ['a', 'b', 'c']);
    assert.deepEqual([0, 1, 2, 3, 4].map((i) => promptIndex(i, 3, 'round-robin', 1)), [0, 1, 2, 0, 1]);
    const draw = (seed: number): number[] => Array.from({ length: 200 }, (_, i) => promptIndex(i, 10, 'random', seed));
    assert.deepEqual(draw(5), draw(5));
    assert.notDeepEqual(draw(5), draw(6));
    const counts = new Array<number>(10).fill(0);
    for (const k of draw(5)) counts[k]!++;
    assert.ok(counts.every((c) => c >= 5), `every prompt drawn: ${counts.join(',')}`);
    assert.equal(mix32(0), 0);
    assert.ok(Number.isInteger(mix32(123456789)) && mix32(123456789) >= 0);
  });
});
