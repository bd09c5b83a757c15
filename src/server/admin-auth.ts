import { timingSafeEqual } from 'node:crypto';

/** `Authorization: Bearer <token>` equals the configured token (compared in constant time). */
export function bearerMatches(header: string | undefined | null, token: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
  if (!m) return false;
  const given = Buffer.from(m[1]!.trim());
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
