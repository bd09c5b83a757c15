import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bearerCheck, bearerToken, hmacComparison, type SecretComparison } from '../../src/server/bearer-auth.ts';

const KEY_A = 'a'.repeat(16);
const KEY_B = 'b-key-0123456789abcdef';
const KEY_C = 'c'.repeat(64);

/** The default comparison, recording what it is asked to digest and how many digests it compares. */
function recordingComparison(): SecretComparison & { digested: string[]; compared: number } {
  const r = {
    digested: [] as string[],
    compared: 0,
    digest(value: string) {
      r.digested.push(value);
      return hmacComparison.digest(value);
    },
    equal(a: Buffer, b: Buffer) {
      r.compared++;
      return hmacComparison.equal(a, b);
    },
  };
  return r;
}

describe('bearer secrets', () => {
  it('accept exactly the configured secrets, any of several, and refuse every other token whatever its length', () => {
    const check = bearerCheck([KEY_A, KEY_B, KEY_C]);
    for (const k of [KEY_A, KEY_B, KEY_C]) {
      assert.equal(check(`Bearer ${k}`), true, k);
      assert.equal(check(`bearer   ${k} `), true, 'scheme is case-insensitive, spaces around the token are ignored');
    }
    for (const wrong of ['', 'a', 'a'.repeat(15), 'a'.repeat(17), KEY_A.toUpperCase(), KEY_B.slice(0, -1), KEY_C + 'c', 'x'.repeat(10_000)]) {
      assert.equal(check(`Bearer ${wrong}`), false, `${wrong.length} characters`);
    }
    for (const header of [undefined, null, '', KEY_A, `Basic ${KEY_A}`, `Bearer`, `Bearer `, `Token ${KEY_A}`]) {
      assert.equal(check(header), false, String(header));
    }
  });

  it('no secrets configured: nothing is accepted', () => {
    const check = bearerCheck([]);
    assert.equal(check('Bearer '), false);
    assert.equal(check(`Bearer ${KEY_A}`), false);
  });

  it('do the same work for every token: a wrong length is digested and compared with every secret, a match does not stop the loop', () => {
    const comparison = recordingComparison();
    const check = bearerCheck([KEY_A, KEY_B, KEY_C], comparison);
    assert.deepEqual(comparison.digested, [KEY_A, KEY_B, KEY_C], 'secrets are digested once, up front');
    for (const token of ['x', 'x'.repeat(16), 'x'.repeat(1000), KEY_A, KEY_C]) {
      comparison.digested.length = 0;
      comparison.compared = 0;
      check(`Bearer ${token}`);
      assert.deepEqual(comparison.digested, [token], `the ${token.length}-character candidate itself is digested`);
      assert.equal(comparison.compared, 3, `a ${token.length}-character candidate is compared with all three secrets`);
    }
    // A missing header costs the same as a wrong token.
    comparison.digested.length = 0;
    comparison.compared = 0;
    check(undefined);
    assert.equal(comparison.digested.length, 1);
    assert.equal(comparison.compared, 3);
  });

  it('digests have one length whatever the input length, so timingSafeEqual never sees unequal lengths', () => {
    const lengths = new Set(['', 'a', KEY_C, 'z'.repeat(100_000)].map((s) => hmacComparison.digest(s).length));
    assert.deepEqual([...lengths], [32]);
  });

  it('parse the token of an Authorization header', () => {
    assert.equal(bearerToken(`Bearer ${KEY_A}`), KEY_A);
    assert.equal(bearerToken(`BEARER\t${KEY_A}  `), KEY_A);
    assert.equal(bearerToken('Bearer    '), undefined);
    assert.equal(bearerToken(`Basic ${KEY_A}`), undefined);
    assert.equal(bearerToken(undefined), undefined);
  });
});
