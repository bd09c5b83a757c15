import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StopMatcher } from '../../src/runtime/engine/stop-matcher.ts';

/** Feeds chunks in order; returns everything emitted and whether (and on which push) it stopped. */
function run(stops: string[], chunks: string[]): { text: string; stoppedAt: number; matcher: StopMatcher } {
  const matcher = new StopMatcher(stops);
  let text = '';
  let stoppedAt = -1;
  chunks.forEach((chunk, i) => {
    const { emit, stopped } = matcher.push(chunk);
    text += emit;
    if (stopped && stoppedAt < 0) stoppedAt = i;
  });
  return { text, stoppedAt, matcher };
}

describe('StopMatcher', () => {
  it('finds a stop spanning three pushes and emits exactly the text before it', () => {
    const matcher = new StopMatcher(['lo W']);
    // The trailing "l" could start "lo W", so it is held back.
    assert.deepEqual(matcher.push('Hel'), { emit: 'He', stopped: false });
    assert.deepEqual(matcher.push('lo Wo'), { emit: 'l', stopped: true });
    assert.equal(matcher.matched, 'lo W');
    // Once stopped, nothing more comes out.
    assert.deepEqual(matcher.push('rld'), { emit: '', stopped: true });
    assert.equal(matcher.flush(), '');
  });

  it('finds a stop split across three pushes', () => {
    const { text, stoppedAt } = run(['STOP'], ['abc S', 'T', 'OPdef']);
    assert.equal(text, 'abc ');
    assert.equal(stoppedAt, 2);
  });

  it('holds back a possible stop prefix, then releases it when the text diverges', () => {
    const matcher = new StopMatcher(['</end>']);
    assert.deepEqual(matcher.push('a </e'), { emit: 'a ', stopped: false });
    assert.deepEqual(matcher.push('n'), { emit: '', stopped: false });
    assert.deepEqual(matcher.push('x'), { emit: '</enx', stopped: false });
  });

  it('re-holds a new stop prefix that starts inside diverged text', () => {
    // "aaa" is not a prefix of "aac", but its suffix "aa" is: only the first "a" is released.
    const { text, stoppedAt } = run(['aac'], ['a', 'a', 'a', 'c', 'z']);
    assert.equal(text, 'a');
    assert.equal(stoppedAt, 3);
  });

  it('flush releases held text at the end', () => {
    const matcher = new StopMatcher(['###']);
    assert.deepEqual(matcher.push('done ##'), { emit: 'done ', stopped: false });
    assert.equal(matcher.flush(), '##');
    assert.equal(matcher.flush(), '');
    assert.equal(matcher.stopped, false);
  });

  it('the earliest of several stops wins', () => {
    assert.equal(run(['world', 'lo'], ['hello world']).text, 'hel');
    assert.equal(run(['lo', 'world'], ['hello world']).text, 'hel');
    // Earliest by start position: "bcdef" starts before the shorter "cd" it contains.
    assert.equal(run(['bcdef', 'cd'], ['abc', 'def']).text, 'a');
  });

  it('holds back for the longest possible prefix among several stops', () => {
    const matcher = new StopMatcher(['xy', 'abcd']);
    assert.deepEqual(matcher.push('..abc'), { emit: '..', stopped: false });
    assert.deepEqual(matcher.push('x'), { emit: 'abc', stopped: false });
    assert.deepEqual(matcher.push('y'), { emit: '', stopped: true });
    assert.equal(matcher.matched, 'xy');
  });

  it('a stop at the very start emits nothing', () => {
    const matcher = new StopMatcher(['<|im_end|>']);
    assert.deepEqual(matcher.push('<|im_end|>trailing'), { emit: '', stopped: true });
  });

  it('passes text straight through with no stops (empty stop strings are ignored)', () => {
    for (const stops of [[], ['']]) {
      const matcher = new StopMatcher(stops);
      assert.deepEqual(matcher.push('a'), { emit: 'a', stopped: false });
      assert.deepEqual(matcher.push(''), { emit: '', stopped: false });
      assert.equal(matcher.flush(), '');
    }
  });

  it('streaming character by character gives the same text as one push', () => {
    const input = 'The answer is 42.\n\nQuestion: what';
    const stops = ['\n\nQuestion:', 'Answer:'];
    const whole = run(stops, [input]);
    const bytewise = run(stops, [...input]);
    assert.equal(whole.text, 'The answer is 42.');
    assert.equal(bytewise.text, whole.text);
    assert.equal(bytewise.matcher.matched, '\n\nQuestion:');
  });
});
