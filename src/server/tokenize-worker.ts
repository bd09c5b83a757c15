/** The tokenizer thread of tokenize-thread.ts: jobs in, token ids or text (or an API error) out. */
import { parentPort, workerData } from 'node:worker_threads';
import { createTokenizer } from '../runtime/tokenizer/create.ts';
import { loadChatTemplate } from './chat-template.ts';
import { runTokenizeJob, type TokenizeJob, type TokenizeReply, type TokenizeThreadInit, toWireApiError } from './tokenize-thread.ts';

const init = workerData as TokenizeThreadInit;
const tokenizer = createTokenizer(init.tokenizer);
// The server's template text, compiled here as the server compiled it.
const template = loadChatTemplate(undefined, init.chatTemplate);
const port = parentPort!;

port.on('message', ({ id, job }: { id: number; job: TokenizeJob }) => {
  let reply: TokenizeReply;
  try {
    reply = { id, result: runTokenizeJob(job, tokenizer, template) };
  } catch (e) {
    reply = { id, error: toWireApiError(e) };
  }
  port.postMessage(reply);
});
