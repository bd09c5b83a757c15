/**
 * Which names a request may address the server by (its Host header): the defence against DNS
 * rebinding. A web page cannot read a local server's answers across origins, but a name the page's
 * author controls can be re-pointed at 127.0.0.1 after the page loads, and the browser then sends
 * the page's own-origin requests, Host: that name, to the server. Checking the name stops it: a
 * rebinding attack always carries the attacker's name, never an IP address or a loopback name.
 *
 * When the check applies (`hostPolicy`): with `--allowed-hosts`, always (`*` turns it off);
 * without, when the server listens on a loopback address and takes requests without an API key,
 * the set-up a developer thinks of as private. A server listening on all interfaces without a key
 * is open to its network by choice, and behind Kubernetes Services and ingresses is addressed by
 * names it cannot know, so it is not checked unless the operator lists them.
 */
import { isIP } from 'node:net';
import type { MiddlewareHandler } from 'hono';
import { ApiError } from './errors.ts';

/** Any Host, or only IP addresses, loopback names and the listed names. */
export type HostPolicy = { check: false } | { check: true; names: ReadonlySet<string> };

export function hostPolicy(listenHost: string, allowedHosts: readonly string[] | undefined, apiKeys: readonly string[] | undefined): HostPolicy {
  if (allowedHosts !== undefined) return allowedHosts.includes('*') ? { check: false } : { check: true, names: new Set(allowedHosts.map(normalizeName)) };
  const keyed = apiKeys !== undefined && apiKeys.length > 0;
  return isLoopback(listenHost) && !keyed ? { check: true, names: new Set() } : { check: false };
}

/** A listen address or host name on the loopback interface. */
export function isLoopback(host: string): boolean {
  const h = normalizeName(host);
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1' || h === '0:0:0:0:0:0:0:1';
}

/** The host name of a Host header value (port and IPv6 brackets removed, lower case, no trailing dot); undefined when malformed. */
export function hostName(header: string): string | undefined {
  const v = header.trim();
  if (v.startsWith('[')) {
    const end = v.indexOf(']');
    const rest = v.slice(end + 1);
    if (end < 0 || (rest !== '' && !/^:\d{1,5}$/.test(rest))) return undefined;
    return normalizeName(v.slice(1, end));
  }
  const m = /^([^:\s/@]+)(?::\d{1,5})?$/.exec(v);
  return m ? normalizeName(m[1]!) : undefined;
}

export function hostAllowed(header: string | undefined, policy: HostPolicy): boolean {
  if (!policy.check || header === undefined) return true;
  const name = hostName(header);
  if (name === undefined) return false;
  return isIP(name) !== 0 || isLoopback(name) || policy.names.has(name);
}

/** 403 for a request addressed by a name outside the policy; `onRefused` counts and logs it. */
export function requireAllowedHost(policy: HostPolicy, onRefused: (path: string, host: string) => void = () => undefined): MiddlewareHandler {
  return async (c, next) => {
    const header = c.req.header('host');
    if (!hostAllowed(header, policy)) {
      onRefused(c.req.path, header ?? '');
      return hostNotAllowed(header ?? '').toResponse();
    }
    await next();
  };
}

export const hostNotAllowed = (header: string): ApiError =>
  new ApiError(
    403,
    `Requests addressed to '${header.slice(0, 100)}' are refused: this server answers only an IP address, a loopback name or a name given to --allowed-hosts / MOP_ALLOWED_HOSTS (a defence against DNS rebinding); add the name the clients use.`,
    'permission_error',
    null,
    'host_not_allowed',
  );

function normalizeName(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '');
}

/**
 * Log lines for refused requests: the first at once, then at most one a `intervalMs` with how many
 * were refused since, so a page probing the server cannot flood the log.
 */
export function refusalLog(log: (line: string) => void, intervalMs = 60_000, now: () => number = Date.now): (path: string, host: string) => void {
  let last = -Infinity;
  let since = 0;
  return (path, host) => {
    since++;
    if (now() - last < intervalMs) return;
    log(`host check: refused ${since} request(s) addressed to names this server does not answer to (last: '${host.slice(0, 100)}' on ${path.slice(0, 100)}); a proxy's name belongs in --allowed-hosts`);
    last = now();
    since = 0;
  };
}

/** The start-up log line. */
export function describeHostPolicy(policy: HostPolicy): string {
  if (!policy.check) return 'host check: off (requests are answered whatever name they address the server by; --allowed-hosts names the ones to accept)';
  const names = [...policy.names];
  return `host check: on (only IP addresses, loopback names${names.length ? ` and ${names.join(', ')}` : ''} are answered, a defence against DNS rebinding; --allowed-hosts adds names)`;
}
