import { describe, expect, it } from 'vitest';
import { isPlainGetObject, rangeToServe } from '../../../local/s3-gateway/object-file.ts';

describe('which GetObject the gateway serves from the file', () => {
  it('takes a plain GET of an object, with or without the SDK x-id', () => {
    expect(isPlainGetObject('GET', 's3:GetObject', [], {})).toBe(true);
    expect(isPlainGetObject('GET', 's3:GetObject', [['x-id', 'GetObject']], { range: 'bytes=0-' })).toBe(
      true,
    );
  });

  it('forwards HEAD, other actions, response overrides and every conditional', () => {
    expect(isPlainGetObject('HEAD', 's3:GetObject', [], {})).toBe(false);
    expect(isPlainGetObject('GET', 's3:GetObjectAcl', [], {})).toBe(false);
    expect(isPlainGetObject('GET', 's3:GetObject', [['response-content-type', 'text/plain']], {})).toBe(
      false,
    );
    for (const name of ['if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since']) {
      expect(isPlainGetObject('GET', 's3:GetObject', [], { [name]: '"x"' })).toBe(false);
    }
  });

  it('serves no range, or a satisfiable bytes=a-[b] with b clipped to the last byte', () => {
    expect(rangeToServe(undefined, 100)).toBe('all');
    expect(rangeToServe('bytes=0-9', 100)).toEqual({ start: 0, end: 9 });
    expect(rangeToServe('bytes=90-', 100)).toEqual({ start: 90, end: 99 });
    expect(rangeToServe('bytes=90-500', 100)).toEqual({ start: 90, end: 99 });
  });

  it('forwards suffix, multiple, reversed and unsatisfiable ranges (s3rver answers those)', () => {
    for (const header of ['bytes=-10', 'bytes=0-1,5-6', 'bytes=9-3', 'bytes=100-', 'items=0-1', 'bytes=x-']) {
      expect(rangeToServe(header, 100)).toBeUndefined();
    }
  });
});
