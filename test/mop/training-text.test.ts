import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadCalibration } from '../../src/mop/calibration.ts';
import { loadRecoveryText } from '../../src/mop/recovery-data.ts';
import { readTrainingTokens } from '../../src/mop/training-text.ts';
import { BatchSampler } from '../../src/runtime/train/batch-sampler.ts';
import { defaultPruneSettings } from '../../src/service/prune/prune-options.ts';
import { validateRecipe } from '../../src/service/prune/run-prune.ts';
import { bundled } from './helpers.ts';

const story = 'Once upon a time, there was a little cat named Tom. Tom liked to play in the sun with his friend. ';
const chat = {
  messages: [
    { role: 'user', content: 'Tell me a story.' },
    { role: 'assistant', content: 'Once upon a time there was a dog.' },
    { role: 'user', content: 'More!' },
    { role: 'assistant', content: [{ type: 'text', text: 'The dog ran ' }, { type: 'text', text: 'home.' }] },
  ],
};

describe('training text formats (recovery data and calibration)', () => {
  let dir: string;
  const file = async (name: string, text: string) => {
    const p = path.join(dir, name);
    await fs.writeFile(p, text);
    return p;
  };
  before(async () => (dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mop-training-text-'))));
  after(() => fs.rm(dir, { recursive: true, force: true }));

  it('reads .jsonl text records as their texts with BOS between records', async () => {
    const { tokenizer } = await bundled();
    const p = await file('stories.jsonl', `${JSON.stringify({ text: 'Tom ran.' })}\n\n${JSON.stringify({ text: 'Sue sat.' })}\n`);
    const read = await readTrainingTokens(p, p, 'recovery data', tokenizer);
    const bos = tokenizer.bosTokenId!;
    assert.deepEqual(read.tokens, [...tokenizer.encode('Tom ran.', { addBos: false }), bos, ...tokenizer.encode('Sue sat.', { addBos: false })]);
    assert.equal(read.records, 2);
    assert.equal(read.format, 'jsonl');
  });

  it("renders chat records with the model's chat template, and marks exactly the assistant turns for assistant-only loss", async () => {
    const { tokenizer } = await bundled();
    const p = await file('chat.jsonl', `${JSON.stringify(chat)}\n`);
    const all = await readTrainingTokens(p, p, 'recovery data', tokenizer);
    assert.equal(tokenizer.decode(all.tokens), 'user: Tell me a story.\nassistant: Once upon a time there was a dog.\nuser: More!\nassistant: The dog ran home.\n');
    assert.equal(all.trainMask, undefined, 'every token trains by default');
    const masked = await readTrainingTokens(p, p, 'recovery data', tokenizer, { assistantOnly: true });
    assert.deepEqual(masked.tokens, all.tokens);
    const trained = masked.tokens.filter((_, i) => masked.trainMask![i] === 1);
    const text = tokenizer.decode(trained);
    assert.match(text, /Once upon a time there was a dog\./);
    assert.match(text, /The dog ran home\./);
    assert.doesNotMatch(text, /Tell me|More!|user/, `only assistant text trains: ${JSON.stringify(text)}`);
  });

  it('assistant-only windows zero the loss weight of every other position', async () => {
    const { tokenizer } = await bundled();
    const p = await file('chats.jsonl', `${JSON.stringify(chat)}\n`.repeat(40));
    const text = await loadRecoveryText(tokenizer, { path: p, seqLen: 32, batch: 2, assistantOnly: true });
    assert.equal(text.trainMasks!.length, text.windows.length);
    assert.equal(text.description.assistantOnly, true);
    const batch = new BatchSampler(text.windows, 4, 32, 0, text.trainMasks).next();
    const trained = batch.weights.reduce((s, w) => s + w, 0);
    assert.ok(trained > 0 && trained < 4 * 32, `${trained} of ${4 * 32} positions train`);
    assert.equal(batch.tokens, trained);
    for (let r = 0; r < 4; r++) {
      const mask = text.trainMasks![batch.windows[r]!]!;
      for (let p = 0; p < 32; p++) assert.equal(batch.weights[r * 32 + p], mask[p + 1], `row ${r} position ${p}`);
    }
  });

  it('calibration draws from .jsonl records too', async () => {
    const { tokenizer } = await bundled();
    const p = await file('cal.jsonl', Array.from({ length: 30 }, () => JSON.stringify({ text: story })).join('\n'));
    const cal = await loadCalibration(tokenizer, { path: p, samples: 4, seqLen: 32, seed: 0 });
    assert.equal(cal.sequences.length, 4);
    assert.equal(cal.sequences[0]![0], tokenizer.bosTokenId);
  });

  it('bad input is one error naming the file and the line', async () => {
    const { tokenizer } = await bundled();
    const good = JSON.stringify({ text: story });
    const cases: [string, string, RegExp][] = [
      ['broken.jsonl', `${good}\n${good}\n{"text": "unterminated\n`, /broken\.jsonl line 3: not valid JSON/],
      ['neither.jsonl', `${good}\n{"prompt": "x"}\n`, /neither\.jsonl line 2: a record needs a "text" string or a "messages" array/],
      ['array.jsonl', '[1, 2]\n', /array\.jsonl line 1: not a JSON object/],
      ['role.jsonl', `${JSON.stringify({ messages: [{ content: 'hi' }] })}\n`, /role\.jsonl line 1: message 0 needs a "role" string/],
      ['blank.jsonl', '\n\n', /file is empty: .*blank\.jsonl/],
    ];
    for (const [name, text, message] of cases) {
      const p = await file(name, text);
      await assert.rejects(loadRecoveryText(tokenizer, { path: p, seqLen: 16, batch: 1 }), { name: 'MopInputError', message }, name);
      await assert.rejects(loadCalibration(tokenizer, { path: p, samples: 1, seqLen: 16, seed: 0 }), { name: 'MopInputError', message }, name);
    }
    await assert.rejects(loadRecoveryText(tokenizer, { path: path.join(dir, 'nope.jsonl'), seqLen: 16, batch: 1 }), { name: 'MopInputError', message: /recovery data file not found: .*nope\.jsonl/ });
    for (const recoveryData of [undefined, 'self']) {
      assert.throws(() => validateRecipe({ ...defaultPruneSettings(), target: 0.4, recoveryData, recoveryLossTokens: 'assistant' }), { name: 'MopInputError', message: /recovery-loss-tokens assistant needs chat records/ });
    }
    const txt = await file('plain.txt', story.repeat(20));
    await assert.rejects(loadRecoveryText(tokenizer, { path: txt, seqLen: 16, batch: 1, assistantOnly: true }), { name: 'MopInputError', message: /plain\.txt: assistant-only loss needs chat records/ });
  });
});
