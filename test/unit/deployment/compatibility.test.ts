import { describe, expect, it } from 'vitest';
import { isCompatible } from '../../../lambdas/domain/deployment/index.ts';

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
