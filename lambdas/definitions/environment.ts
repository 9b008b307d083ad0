/**
 * Names of the environment variables the handlers read (set by the CDK stack in AWS and by the
 * local cloud locally). One list, so the two cannot drift.
 */
export const env = {
  /** Name of the updates table. */
  updatesTable: 'UPDATES_TABLE',
  /** Name of the artifact bucket. */
  artifactBucket: 'ARTIFACT_BUCKET',
  /** `kms` (AWS) or `local` (a PEM file, local cloud only). */
  signerKind: 'SIGNER_KIND',
  /** KMS key id or ARN of the ECC_NIST_P256 signing key, when SIGNER_KIND=kms. */
  signingKeyId: 'SIGNING_KEY_ID',
  /** Path of the PKCS#8 PEM private key, when SIGNER_KIND=local. */
  localSigningKeyFile: 'LOCAL_SIGNING_KEY_FILE',
  /** Lifetime of a presigned upload URL, in seconds (optional; 900 when unset). */
  uploadUrlTtlSeconds: 'UPLOAD_URL_TTL_SECONDS',
  /** Lifetime of the signature made when an update is committed, in seconds (optional; 90 days when unset). */
  signatureTtlSeconds: 'MANIFEST_SIGNATURE_TTL_SECONDS',
  /** Deployments table name. */
  deploymentsTable: 'DEPLOYMENTS_TABLE',
  /** Executions table name. */
  executionsTable: 'EXECUTIONS_TABLE',
  /** Fleet table name. */
  fleetTable: 'FLEET_TABLE',
  /** Name or ARN of the fan-out worker function (for self-invocation and the scheduler). */
  fanoutWorkerFunction: 'FANOUT_WORKER_FUNCTION',
  /** Account-wide cap on shadow updates per second shared by all deployments (optional; 400). */
  accountShadowRateCap: 'ACCOUNT_SHADOW_RATE_CAP',
  /** ARN of the role assumed for STS download credentials. */
  downloadRoleArn: 'DOWNLOAD_ROLE_ARN',
  /** IoT data-plane endpoint (`https://xxx-ats.iot.<region>.amazonaws.com`); the SDK default otherwise. */
  iotDataEndpoint: 'IOT_DATA_ENDPOINT',
} as const;
