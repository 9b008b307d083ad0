import { Validations } from 'aws-cdk-lib';
import { Construct, type IConstruct } from 'constructs';

/**
 * Acknowledges validation findings (cdk-nag rule ids) on `scope` and everything under it, each
 * with the reason it is accepted. One call per id: cdk-nag matches acknowledgements id by id.
 */
export function acknowledge(scope: IConstruct, reasons: Readonly<Record<string, string>>): void {
  for (const [id, reason] of Object.entries(reasons)) {
    Validations.of(scope).acknowledge({ id, reason });
  }
}

/**
 * Acknowledges findings on a grantee, when it is a construct. Grant methods use it for the
 * findings their own statements cause, so the reason sits beside the grant it explains.
 */
export function acknowledgeOn(grantee: unknown, reasons: Readonly<Record<string, string>>): void {
  if (Construct.isConstruct(grantee)) acknowledge(grantee, reasons);
}
