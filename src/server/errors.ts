/**
 * Every failure leaves the server in OpenAI's error shape, so the official clients raise their
 * typed errors (BadRequestError, NotFoundError, RateLimitError, ...) with a readable message:
 *   {"error": {"message": "...", "type": "invalid_request_error", "param": "top_p", "code": null}}
 */
import type { z } from 'zod';

export interface OpenAIErrorBody {
  error: {
    message: string;
    type: string;
    param: string | null;
    code: string | null;
  };
}

export type ErrorStatus = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 429 | 500 | 503;

/** An error meant for the client: status, OpenAI type/code, the offending request field. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: ErrorStatus,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (Retry-After). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  toResponse(): Response {
    return new Response(JSON.stringify(this.toBody()), {
      status: this.status,
      headers: { 'content-type': 'application/json', ...this.headers },
    });
  }
}

export const invalidRequest = (message: string, param: string | null = null, code: string | null = null): ApiError =>
  new ApiError(400, message, 'invalid_request_error', param, code);

export const modelNotFound = (model: string): ApiError =>
  new ApiError(404, `The model \`${model}\` does not exist.`, 'invalid_request_error', 'model', 'model_not_found');

export const notFound = (path: string): ApiError => new ApiError(404, `No route ${path}`, 'invalid_request_error', null, 'not_found');

export const bodyTooLarge = (limit: number): ApiError =>
  new ApiError(413, `The request body exceeds the limit of ${limit} bytes.`, 'invalid_request_error', null, 'request_too_large');

/** The waiting queue is full; Retry-After tells well-behaved clients when to come back. */
export const queueFull = (retryAfterSeconds: number): ApiError =>
  new ApiError(429, 'The server is at capacity (request queue full); retry later.', 'rate_limit_error', null, 'queue_full', {
    'retry-after': String(retryAfterSeconds),
  });

/** The request clashes with the server's state (a prune already running, a finished job, the active model). */
export const conflict = (message: string, code: string): ApiError => new ApiError(409, message, 'invalid_request_error', null, code);

export const unauthorized = (): ApiError =>
  new ApiError(401, 'Missing or wrong admin token: send Authorization: Bearer <MOP_ADMIN_TOKEN>.', 'authentication_error', null, 'invalid_api_key', {
    'www-authenticate': 'Bearer',
  });

/** As vLLM's --api-key: the official clients raise AuthenticationError. */
export const invalidApiKey = (): ApiError =>
  new ApiError(401, 'Missing or wrong API key: send Authorization: Bearer <key> with one of the keys the server was started with (--api-key / MOP_API_KEY).', 'authentication_error', null, 'invalid_api_key', {
    'www-authenticate': 'Bearer',
  });

/** A body that is not declared as JSON: refused before it is read (a web page can send text/plain cross-site without a preflight). */
export const unsupportedMediaType = (contentType: string | undefined): ApiError =>
  new ApiError(
    415,
    `The request body must be JSON: send \`content-type: application/json\` (got ${contentType ? `\`${contentType.slice(0, 100)}\`` : 'no content type'}).`,
    'invalid_request_error',
    null,
    'unsupported_media_type',
  );

export const adminDisabled = (): ApiError =>
  new ApiError(404, 'The admin API is off: start the server with --admin-token / MOP_ADMIN_TOKEN to enable it.', 'invalid_request_error', null, 'admin_disabled');

export const unavailable = (why: string, code = 'service_unavailable'): ApiError => new ApiError(503, why, 'server_error', null, code, { 'retry-after': '1' });

/** Internals (stack, paths) stay in the log; the client learns only that it was our fault. */
export const internalError = (): ApiError => new ApiError(500, 'Internal server error.', 'server_error', null, null);

/**
 * A zod issue path as OpenAI writes `param`: `messages[0].content`, `stop[4]`, `stream_options.include_usage`.
 */
export function paramFromPath(path: readonly PropertyKey[]): string | null {
  if (path.length === 0) return null;
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out ? '.' : ''}${String(p)}`;
  return out;
}

/** The first schema violation of a request body, as a 400 naming the field. */
export function fromZodError(error: z.ZodError): ApiError {
  const issue = error.issues[0];
  if (!issue) return invalidRequest('Invalid request body.');
  const param = paramFromPath(issue.path);
  return invalidRequest(param ? `Invalid value for '${param}': ${issue.message}` : issue.message, param);
}
