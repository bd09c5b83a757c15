/**
 * `Authorization: Bearer <secret>` checks, for the admin token and the /v1 API keys.
 * The work done does not depend on the token sent: it is reduced to a fixed-length digest (HMAC-SHA256
 * under a key drawn once per process, so digests are useless outside it) and compared in constant
 * time with the digest of every configured secret, without stopping at the first match. A wrong
 * length, a wrong prefix and a missing header all cost the same, so timing leaks neither a secret's
 * length nor how much of it a guess got right.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Whether an Authorization header carries one of the configured secrets. */
export type BearerCheck = (authorization: string | null | undefined) => boolean;

/** How secrets are reduced and compared; the default is HMAC-SHA256 digests and timingSafeEqual. */
export interface SecretComparison {
  /** A fixed-length digest of a secret or a candidate. */
  digest(value: string): Buffer;
  /** Constant-time equality of two digests. */
  equal(a: Buffer, b: Buffer): boolean;
}

const processKey = randomBytes(32);

export const hmacComparison: SecretComparison = {
  digest: (value) => createHmac('sha256', processKey).update(value, 'utf8').digest(),
  equal: (a, b) => timingSafeEqual(a, b),
};

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), or undefined. */
export function bearerToken(authorization: string | null | undefined): string | undefined {
  const m = /^Bearer\s+/i.exec(authorization ?? '');
  const token = m ? authorization!.slice(m[0].length).trim() : '';
  return token === '' ? undefined : token;
}

/** A check accepting any one of `secrets` (none: nothing is accepted). */
export function bearerCheck(secrets: readonly string[], comparison: SecretComparison = hmacComparison): BearerCheck {
  const expected = secrets.map((s) => comparison.digest(s));
  return (authorization) => {
    // A missing or malformed header is digested too (as ''), so it costs what a wrong token costs.
    const token = bearerToken(authorization);
    const given = comparison.digest(token ?? '');
    let matched = false;
    for (const e of expected) matched = comparison.equal(given, e) || matched;
    return matched && token !== undefined;
  };
}
