/**
 * What encoding a prompt on the tokenizer thread costs against encoding it inline on the HTTP
 * thread, by prompt length: the round trip (post, encode there, result back) and the inline encode,
 * each the median of `--runs` after as many warm-up runs. The size below which the generation
 * routes encode inline (INLINE_ENCODE_MAX_SIZE in src/server/prompt-encoding.ts) rests on it.
 *
 *   node --import tsx scripts/experiments/bench-tokenize-round-trip.ts [--lengths 16,64,256,1024,4096] [--runs 500]
 */
import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import { DEFAULT_CHAT_TEMPLATE } from '../../src/server/chat-template.ts';
import { TokenizeThread } from '../../src/server/tokenize-thread.ts';
import { median } from '../lib/stats.ts';
import { parseScriptArgs } from '../lib/script-args.ts';
import { log } from '../lib/log.ts';

const args = parseScriptArgs(import.meta.url, {
  lengths: { type: 'string', default: '16,64,256,1024,4096' },
  runs: { type: 'string', default: '500' },
});
const runs = Number(args.runs);
const model = await loadModel(defaultModelPath());
const tokenizer = createTokenizer(model.tokenizer);
const thread = new TokenizeThread({ tokenizer: model.tokenizer, chatTemplate: DEFAULT_CHAT_TEMPLATE }, { threads: 1 });
const story = 'Once upon a time, there was a little dog named Max who loved to run in the park. ';

/** Median milliseconds of `runs` calls of `f`, after as many unmeasured ones. */
async function timed(f: () => unknown): Promise<number> {
  for (let i = 0; i < runs; i++) await f();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await f();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

log('characters | thread round trip (µs) | inline encode (µs)');
for (const length of args.lengths.split(',').map(Number)) {
  const text = story.repeat(Math.ceil(length / story.length)).slice(0, length);
  const onThread = await timed(() => thread.run({ op: 'prompts', texts: [text], addBos: true }));
  const inline = await timed(() => tokenizer.encode(text, { addBos: true }));
  log(`${length} | ${Math.round(onThread * 1000)} | ${Math.round(inline * 1000)}`);
}
await thread.close();
