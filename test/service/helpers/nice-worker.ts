// Runs in a worker thread: renices itself with the product's helper, then reports its own priority
// and the priority a thread it starts afterwards inherits.
import { getPriority } from 'node:os';
import { parentPort, Worker } from 'node:worker_threads';
import { niceCurrentThread } from '../../../src/service/threads/thread-priority.ts';

const said = niceCurrentThread(7);
const child = new Worker("require('node:worker_threads').parentPort.postMessage(require('node:os').getPriority(0))", { eval: true });
child.once('message', (inherited: number) => parentPort!.postMessage({ said, own: getPriority(0), inherited }));
