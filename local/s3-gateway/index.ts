export { AwsChunkedDecoder, BodyRejectedError, Sha256Checker } from './body.ts';
export { type S3ErrorInfo, s3ErrorXml } from './errors.ts';
export type { ObjectLocator, StoredObject } from './object-file.ts';
export { type S3Operation, s3OperationOf } from './operation.ts';
export { type RunningS3Gateway, type S3GatewayOptions, startS3Gateway } from './server.ts';
