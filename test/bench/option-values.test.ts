import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { intOption, isPositiveInt, listOption, numberListOption, numberOption, onOffOption } from '../../scripts/lib/option-values.ts';

describe('scripts/lib/option-values', () => {
  it('numberOption returns the number, and refuses what is not one or what the check refuses, naming the option', () => {
    assert.equal(numberOption('target', '0.4', (n) => n > 0 && n < 1), 0.4);
    assert.throws(() => numberOption('target', '1.5', (n) => n > 0 && n < 1), /--target: bad value '1\.5'/);
    assert.throws(() => numberOption('target', 'abc', Number.isFinite), /--target/);
    assert.throws(() => numberOption('samples', '', isPositiveInt), /--samples/, 'an empty value is not 0');
  });

  it('intOption takes integers in range only and says which range', () => {
    assert.equal(intOption('reps', '3', 1, 20), 3);
    assert.throws(() => intOption('reps', '0', 1, 20), /--reps: expected an integer in \[1, 20\], got '0'/);
    assert.throws(() => intOption('reps', '2.5'), /--reps: expected an integer ≥ 1/);
  });

  it('lists are comma-separated, trimmed, without empty items', () => {
    assert.deepEqual(listOption(' bundled, 100m,,'), ['bundled', '100m']);
    assert.deepEqual(numberListOption('batch', '1, 8', isPositiveInt), [1, 8]);
    assert.throws(() => numberListOption('batch', '1,x', isPositiveInt), /--batch: bad value 'x'/);
  });

  it('onOffOption reads on and off and nothing else', () => {
    assert.equal(onOffOption('ort-spin', 'on'), true);
    assert.equal(onOffOption('ort-spin', 'off'), false);
    assert.throws(() => onOffOption('ort-spin', 'yes'), /--ort-spin: on or off, not 'yes'/);
  });
});
