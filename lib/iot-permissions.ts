import { ArnFormat, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';
import { acknowledgeOn } from './acknowledge.ts';

/**
 * Grants for AWS IoT, which has no L2 constructs to grant on: each function names its exact
 * actions and resource pattern, and acknowledges the one wildcard it needs on the grantee, so
 * no handler-side code writes IAM statements by hand.
 */

/** `arn:<partition>:iot:<region>:<account>:<resource>`. */
export function iotArn(scope: IConstruct, resource: string): string {
  const [type = resource, ...name] = resource.split('/');
  return Stack.of(scope).formatArn({
    service: 'iot',
    resource: type,
    resourceName: name.join('/'),
    arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
  });
}

/** The thing names the shadows belong to are data (every device of a deployment), not known at deploy time. */
export function grantShadowAccess(
  scope: IConstruct,
  grantee: iam.IGrantable,
  ...actions: ('iot:UpdateThingShadow' | 'iot:GetThingShadow')[]
): void {
  grantWithWildcard(scope, grantee, actions, 'thing/*', {
    reason:
      'Devices are targeted at run time (thing groups, lists, fleet queries), so shadow access names every thing; the handlers only ever address the named shadow `ota`.',
  });
}

/** Lets `grantee` publish to topics matching `topicPattern` (IAM wildcards: `ota/things/*\/downloads/accepted`). */
export function grantPublish(scope: IConstruct, grantee: iam.IGrantable, topicPattern: string): void {
  grantWithWildcard(scope, grantee, ['iot:Publish'], `topic/${topicPattern}`, {
    reason:
      'Answers go to the requesting device’s own response topic, whose thing name is known only at run time; the wildcard stands for the thing name alone.',
  });
}

/** Reads thing-group membership, to expand a deployment's target. */
export function grantListThingGroupMembers(scope: IConstruct, grantee: iam.IGrantable): void {
  grantWithWildcard(scope, grantee, ['iot:ListThingsInThingGroup'], 'thinggroup/*', {
    reason:
      'A deployment targets any thing group the operator names at run time; listing members is read-only and reaches no device.',
  });
}

function grantWithWildcard(
  scope: IConstruct,
  grantee: iam.IGrantable,
  actions: readonly string[],
  resource: string,
  { reason }: { reason: string },
): void {
  const arn = iotArn(scope, resource);
  iam.Grant.addToPrincipal({ grantee, actions: [...actions], resourceArns: [arn] });
  acknowledgeOn(grantee, { [`AwsSolutions-IAM5[Resource::${asNagNames(scope, arn)}]`]: reason });
}

/**
 * The ARN as cdk-nag names it in a finding: literals as they are, `{ Ref: X }` as `<X>`. Region
 * and account are literals when the stack has an environment, pseudo-parameters otherwise.
 */
function asNagNames(scope: IConstruct, arn: string): string {
  const resolved: unknown = Stack.of(scope).resolve(arn);
  if (typeof resolved === 'string') return resolved;
  const parts = (resolved as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1];
  return parts
    .map((part) => (typeof part === 'string' ? part : `<${(part as { Ref: string }).Ref}>`))
    .join('');
}
