/**
 * Load tests and benchmarks here only ever target this machine: a URL whose host is not loopback
 * (127.0.0.0/8, localhost, ::1) is refused before any connection is made.
 */
import net from 'node:net';
import { LoadConfigError } from './options.ts';

export class NonLoopbackUrlError extends LoadConfigError {
  override name = 'NonLoopbackUrlError';
}

/** True for 127.0.0.0/8, `localhost` (and `*.localhost`) and `::1`. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (net.isIPv4(host)) return host.split('.')[0] === '127';
  // WHATWG URL already writes ::1 in its shortest form; IPv4-mapped addresses are not accepted (nor by the k6 script).
  return net.isIPv6(host) && (host === '::1' || host === '0:0:0:0:0:0:0:1');
}

/** Parses `url` and throws `NonLoopbackUrlError` unless it is http(s) to a loopback host. */
export function assertLoopbackUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new LoadConfigError(`url "${url}" is not a valid URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new LoadConfigError(`url "${url}" must be http:// or https://`);
  }
  if (!isLoopbackHost(parsed.hostname)) {
    throw new NonLoopbackUrlError(
      `refusing to load-test ${parsed.host}: only loopback targets are allowed (127.0.0.0/8, localhost, [::1]); load tests here must target this machine`,
    );
  }
  return parsed;
}
