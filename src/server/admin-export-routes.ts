/**
 * GET /admin/models/{id}/export?format=gguf&dtype=q8_0: a served variant (pruned or dense) as a
 * GGUF file llama.cpp / Ollama run, streamed as an attachment. The conversion runs in a worker
 * thread on the variant's shared weights (export-thread.ts), one export at a time, into a temporary
 * file that is gone once the response ends.
 */
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Hono } from 'hono';
import { checkExportRequest } from '../mop/export.ts';
import { MopInputError } from '../mop/errors.ts';
import type { AdminDeps } from './admin-context.ts';
import { ApiError, conflict, invalidRequest, modelNotFound } from './errors.ts';
import { ExportFailedError, exportInWorker, exportTimeoutMs } from './export-thread.ts';

/** Names of errors that mean "this model cannot be written as asked" (the request's fault, not ours). */
const UNEXPORTABLE = new Set(['ModelFormatError', 'MopInputError', 'TokenizerError']);

export function exportRoutes(app: Hono, deps: AdminDeps): void {
  let running = false;
  app.get('/models/:id/export', async (c) => {
    const id = c.req.param('id');
    const model = deps.service.modelOf(id);
    if (!model) throw modelNotFound(id);
    const format = c.req.query('format') ?? 'gguf';
    const dtype = c.req.query('dtype') ?? 'f32';
    if (format !== 'gguf') {
      throw invalidRequest(`format must be gguf here, got '${format}' (a Hugging Face export is a directory: write one with mop export --format hf).`, 'format');
    }
    let request: ReturnType<typeof checkExportRequest>;
    try {
      request = checkExportRequest({ format, dtype });
    } catch (e) {
      if (e instanceof MopInputError) throw invalidRequest(`${e.message}.`, 'dtype');
      throw e;
    }
    if (running) throw conflict('An export is already running; retry when it has finished.', 'export_running');
    running = true;
    // A directory of its own: a thread stopped mid-write leaves its partial file there, removed with it.
    const dir = await fs.mkdtemp(join(tmpdir(), 'mop-export-'));
    const filename = `${id.replace(/[^\w.-]/g, '_')}.${request.dtype}.gguf`;
    const file = join(dir, filename);
    const weightBytes = [...model.weights.values()].reduce((n, t) => n + t.data.byteLength, 0);
    try {
      const task = { model: { spec: model.spec, weights: model.weights, tokenizer: model.tokenizer, ...(model.chatTemplate !== undefined && { chatTemplate: model.chatTemplate }) }, out: file, ...request, name: id };
      await exportInWorker(task, exportTimeoutMs(weightBytes), c.req.raw.signal);
    } catch (e) {
      await fs.rm(dir, { recursive: true, force: true });
      throw exportError(e, id, deps.log);
    } finally {
      running = false;
    }
    return streamAndRemove(dir, file, filename);
  });
}

function exportError(e: unknown, id: string, log: (line: string) => void): unknown {
  if (!(e instanceof ExportFailedError)) return e;
  if (UNEXPORTABLE.has(e.reason)) return new ApiError(400, `'${id}' cannot be exported as asked: ${e.message}`, 'invalid_request_error', null, 'export_unsupported');
  log(`export of '${id}' failed: ${e.message}`);
  if (e.reason === 'timeout') return new ApiError(503, `The export of '${id}' ${e.message}; serving is unaffected.`, 'server_error', null, 'export_timeout', { 'retry-after': '60' });
  return new ApiError(500, `The export of '${id}' failed; serving is unaffected.`, 'server_error', null, 'export_failed');
}

/** The file as an attachment; its directory is removed as soon as the file is open (POSIX), else when the stream closes. */
async function streamAndRemove(dir: string, file: string, filename: string): Promise<Response> {
  const handle = await fs.open(file);
  const { size } = await handle.stat();
  const removed = await fs.rm(dir, { recursive: true }).then(() => true, () => false);
  const stream = handle.createReadStream();
  if (!removed) stream.once('close', () => void fs.rm(dir, { recursive: true, force: true }));
  return new Response(Readable.toWeb(stream) as ReadableStream, {
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(size), 'content-disposition': `attachment; filename="${filename}"` },
  });
}
