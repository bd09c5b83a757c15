/**
 * /admin/prune: start a prune job (202 once its worker has read the calibration text), list jobs,
 * watch one, cancel one.
 */
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { MopInputError } from '../mop/errors.ts';
import type { ModelService } from '../service/model-service.ts';
import { resolveUnderDataDir } from '../service/prune/data-dir.ts';
import type { PruneJobRequest } from '../service/prune/prune-job-view.ts';
import { PruneFileError } from '../service/prune/prune-input-files.ts';
import { jsonLabel, namesFile, type PruneRecipe, pruneOptions, resolvePruneRecipe } from '../service/prune/prune-options.ts';
import { DEFAULT_MODEL_ALIAS, isDefaultModel } from '../service/variant-registry.ts';
import type { AdminDeps } from './admin-context.ts';
import { ApiError, fromZodError, invalidRequest } from './errors.ts';

/**
 * POST /admin/prune body: every option of the shared prune table under its snake_case name (the
 * same names as `mop prune`'s flags), plus where the result goes. Values are checked by the table.
 */
const pruneTargetFields = z
  .object({
    source: z.string().min(1).optional(),
    id: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, ".", "_" and "-", at most 64')
      // A variant called "default" could never be reached: requests naming it get the active one.
      .refine((id) => !isDefaultModel(id), `"${DEFAULT_MODEL_ALIAS}" is reserved (requests naming it get the active variant); choose another id`)
      .optional(),
    activate: z.boolean().default(true),
    /** Answer the recipe's cost on this machine (200) instead of starting a job. */
    dry_run: z.boolean().default(false),
  })
  .catchall(z.unknown());

const recipeFields = new Set(pruneOptions.map((o) => o.json));

const NOT_AN_OBJECT = 'The body must be a JSON object, e.g. {"target": 0.4, "strategy": "mop"}.';

export function pruneJobRoutes(app: Hono, deps: AdminDeps): void {
  app.post('/prune', async (c) => {
    const { dryRun, ...request } = await pruneRequestOf(c, deps);
    // The cost before anything runs: candidates, training tokens, predicted wall time, peak memory.
    if (dryRun) return c.json({ object: 'prune.estimate', ...(await deps.service.jobs.estimate(request)) });
    // Refused before anything runs: a prune whose result could not be served (409).
    deps.service.checkRoomFor(request.id);
    let job;
    try {
      job = await deps.service.jobs.start(request);
    } catch (e) {
      if (e instanceof PruneFileError) throw invalidRequest(e.message, e.field);
      throw e;
    }
    return c.json(job, 202, { location: `/admin/prune/${job.id}` });
  });

  app.get('/prune', (c) => c.json({ object: 'list', data: deps.service.jobs.list() }));

  app.get('/prune/:id', (c) => {
    const job = deps.service.jobs.get(c.req.param('id'));
    if (!job) throw jobNotFound(deps.service, c.req.param('id'));
    return c.json(job);
  });

  app.delete('/prune/:id', async (c) => {
    const job = await deps.service.jobs.cancel(c.req.param('id'));
    if (!job) throw jobNotFound(deps.service, c.req.param('id'));
    return c.json(job);
  });
}

/** The body as a job request: known fields only, the recipe completed from the server's defaults, named files under --data-dir. */
async function pruneRequestOf(c: Context, deps: AdminDeps): Promise<PruneJobRequest & { dryRun: boolean }> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    throw invalidRequest(NOT_AN_OBJECT);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalidRequest(NOT_AN_OBJECT);
  const parsed = pruneTargetFields.safeParse(body);
  if (!parsed.success) throw fromZodError(parsed.error);
  const { source, id, activate, dry_run: dryRun, ...rest } = parsed.data;
  for (const field of Object.keys(rest)) {
    if (!recipeFields.has(field)) throw invalidRequest(`Unknown field '${field}'; a prune request takes ${[...recipeFields, 'source', 'id', 'activate', 'dry_run'].join(', ')}.`, field);
  }
  const raw: Partial<Record<keyof PruneRecipe, unknown>> = {};
  for (const o of pruneOptions) if (rest[o.json] !== undefined) raw[o.key] = rest[o.json];
  let recipe: PruneRecipe;
  try {
    recipe = resolvePruneRecipe(raw, deps.pruneDefaults, jsonLabel, true);
  } catch (e) {
    if (e instanceof MopInputError) throw invalidRequest(e.message, e.message.split(':')[0]);
    throw e;
  }
  // Files named in the request only from the data directory; the server's own defaults are the operator's.
  for (const o of pruneOptions) {
    if (rest[o.json] === undefined || !namesFile(o, recipe[o.key])) continue;
    const real = await resolveUnderDataDir(recipe[o.key] as string, deps.dataDir);
    if (real === undefined) throw invalidRequest(`${o.json} must name a regular file under the server's data directory (--data-dir), as a path relative to it or an absolute one.`, o.json);
    (recipe as unknown as Record<string, unknown>)[o.key] = real;
  }
  return { ...recipe, activate, dryRun, ...(source !== undefined && { source }), ...(id !== undefined && { id }) };
}

/** 404 for a job id: never existed, or no longer kept (then where its result may be). */
function jobNotFound(service: ModelService, id: string): ApiError {
  if (!service.jobs.forgotten(id)) return new ApiError(404, `No prune job '${id}'.`, 'invalid_request_error', null, 'job_not_found');
  const where = service.storeSync ? ' If it succeeded, its pruned model is in the model store: GET /admin/store lists the entries with their recipes.' : '';
  return new ApiError(
    404,
    `Prune job '${id}' aged out: the server keeps the last ${service.jobs.historyLimit} finished jobs (--max-job-history), and none for a request it refused.${where}`,
    'invalid_request_error',
    null,
    'job_aged_out',
  );
}
