/** How many requests a run sent, how many succeeded and failed, and the failures by error. */
export interface RequestCounts {
  sent: number;
  ok: number;
  failed: number;
  /** Failed requests by error kind (`unknown` where a failure named none). */
  errors: Record<string, number>;
}

export function requestCounts(records: readonly { ok: boolean; error?: string | null }[]): RequestCounts {
  const errors: Record<string, number> = {};
  let ok = 0;
  for (const r of records) {
    if (r.ok) {
      ok++;
      continue;
    }
    const kind = r.error ?? 'unknown';
    errors[kind] = (errors[kind] ?? 0) + 1;
  }
  return { sent: records.length, ok, failed: records.length - ok, errors };
}
