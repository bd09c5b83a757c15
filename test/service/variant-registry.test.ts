import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isDefaultModel, VariantRegistry } from '../../src/service/variant-registry.ts';

function registry(): VariantRegistry<{ id: string }> {
  const r = new VariantRegistry<{ id: string }>();
  r.add({ id: 'dense' });
  r.add({ id: 'mop-30' });
  return r;
}

describe('default model resolution', () => {
  it('omitted, null, empty and "default" ask for the active variant; anything else does not', () => {
    for (const m of [undefined, null, '', 'default']) assert.equal(isDefaultModel(m), true, String(m));
    for (const m of ['dense', 'Default', ' default', 0, false, {}, []]) assert.equal(isDefaultModel(m), false, String(m));
  });

  it('lookup names the variant, or the active one for the default alias, and never draws the A/B split', () => {
    const r = registry();
    r.setSplit({ variant: 'mop-30', share: 1 });
    r.random = () => assert.fail('lookup drew the A/B split');
    for (const m of [undefined, null, '', 'default']) assert.equal(r.lookup(m)?.id, 'dense', String(m));
    assert.equal(r.lookup('mop-30')?.id, 'mop-30');
    assert.equal(r.lookup('nope'), undefined);
    assert.equal(r.lookup(42), undefined);
  });

  it('resolve routes the default alias through the split and names by id', () => {
    const r = registry();
    r.setSplit({ variant: 'mop-30', share: 0.5 });
    r.random = () => 0.1;
    assert.equal(r.resolve('default')?.id, 'mop-30');
    r.random = () => 0.9;
    assert.equal(r.resolve(undefined)?.id, 'dense');
    assert.equal(r.resolve('mop-30')?.id, 'mop-30');
  });
});
