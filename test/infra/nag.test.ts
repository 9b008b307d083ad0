import { type Acknowledgment, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { buildStack } from './stack.ts';

/** The acknowledgements the stack makes, recorded while it is built (at collection: it.each needs them). */
function recordAcknowledgements(): Acknowledgment[] {
  const acknowledge = vi.spyOn(Validations.prototype, 'acknowledge');
  buildStack();
  const calls = acknowledge.mock.calls.flat();
  acknowledge.mockRestore();
  return calls;
}
const acknowledged = recordAcknowledgements();
const acknowledgedIds = [...new Set(acknowledged.map(({ id }) => id))];

afterEach(() => {
  vi.restoreAllMocks();
});

/** Builds the stack with cdk-nag while dropping the acknowledgements with this id. */
function synthWithout(id: string): () => Template {
  const original = Validations.prototype.acknowledge;
  vi.spyOn(Validations.prototype, 'acknowledge').mockImplementation(function (
    this: Validations,
    ...rules: Acknowledgment[]
  ) {
    original.apply(
      this,
      rules.filter((rule) => rule.id !== id),
    );
  });
  const { stack } = buildStack({ nag: true });
  return () => Template.fromStack(stack);
}

describe('cdk-nag AwsSolutions', () => {
  it('finds nothing unacknowledged in the stack', () => {
    const { stack } = buildStack({ nag: true });
    expect(() => Template.fromStack(stack)).not.toThrow();
  });

  // bin/app.ts gives the stack the CLI's account and region when there are credentials; findings
  // then name literal ARNs, and each acknowledgement must still match its finding.
  it('finds nothing unacknowledged in a stack with a concrete account and region', () => {
    const { stack } = buildStack({ nag: true, env: { account: '123456789012', region: 'eu-west-1' } });
    expect(() => Template.fromStack(stack)).not.toThrow();
  });

  it('is given reasons a reviewer can check, not placeholders', () => {
    expect(acknowledged.length).toBeGreaterThan(0);
    for (const { reason } of acknowledged) expect(reason.length).toBeGreaterThan(60);
  });

  // Each acknowledgement must answer a real finding: removing it fails the synth. This also
  // proves the nag test above would catch a new finding.
  it.each(acknowledgedIds)('fails without the acknowledgement %s', (id) => {
    expect(synthWithout(id)).toThrow(id);
  });
});
