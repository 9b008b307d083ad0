import { describe, expect, it } from 'vitest';
import { isCompatible, sameProperties } from '../../../lambdas/domain/deployment/index.ts';

const device = { manufacturer: 'contoso', model: 'toaster', region: 'eu' };

describe('compatibility', () => {
  it.each([
    ['every property of one set', [{ manufacturer: 'contoso', model: 'toaster' }], true],
    ['one of several sets', [{ model: 'kettle' }, { model: 'toaster' }], true],
    ['a differing value', [{ manufacturer: 'contoso', model: 'kettle' }], false],
    ['a property the device lacks', [{ manufacturer: 'contoso', color: 'red' }], false],
    ['values case-sensitively', [{ manufacturer: 'Contoso' }], false],
    ['no constraint when there are no sets', [], true],
  ])('matches %s: %s', (_name, sets, expected) => {
    expect(isCompatible(device, sets)).toBe(expected);
  });

  it('does not match inherited properties', () => {
    expect(isCompatible({}, [{ toString: 'x' }])).toBe(false);
  });
});

describe('sameProperties', () => {
  it('is true for the same names and values in any order, false for any difference', () => {
    expect(sameProperties({ a: '1', b: '2' }, { b: '2', a: '1' })).toBe(true);
    expect(sameProperties({ a: '1' }, { a: '1', b: '2' })).toBe(false);
    expect(sameProperties({ a: '1', b: '2' }, { a: '1' })).toBe(false);
    expect(sameProperties({ a: '1' }, { a: 'A' })).toBe(false);
    expect(sameProperties({}, {})).toBe(true);
  });
});
