/**
 * The deployment domain: request validation, the execution state machine, the `ota` shadow
 * protocol, rollout planning, abort rules and counters. Pure: no AWS, no clock, no environment.
 * docs/adr/0010-deployment-shadow-protocol.md explains the design.
 */
export { type AbortDecision, evaluateAbort, failuresOf, finishedDevices } from './abort.ts';
export {
  type DeviceReport,
  decideReport,
  type IgnoreCode,
  type ReportDecision,
  type ReportIgnored,
  type ReportProgress,
  type ReportTransition,
  SHADOW_VERSION_RESET_AFTER_MS,
  sameUpdateId,
} from './acknowledge.ts';
export {
  type CompatibilitySet,
  compatibilitySetSchema,
  type DeviceProperties,
  isCompatible,
  matchesCompatibilitySet,
} from './compatibility.ts';
export {
  applyCounterDeltas,
  type CounterDeltas,
  counterDeltas,
  emptyCounters,
  type StateCounters,
  totalExecutions,
} from './counters.ts';
export {
  type Applied,
  applyTransition,
  type CancelReason,
  type CancelRequested,
  type CommandRefused,
  cancel,
  deadlineOf,
  type Execution,
  initialState,
  notify,
  retry,
  supersede,
  timeOutIfDue,
  type Unchanged,
} from './execution.ts';
export {
  type DeviceReportedState,
  deviceReportedStates,
  fitReportedOta,
  type LastResult,
  type ParsedReport,
  parseReportedOta,
  type ReportedOta,
  type ReportedProgress,
  type ReportInvalid,
  reportLimits,
} from './report.ts';
export {
  type AbortCriterion,
  type DeploymentPolicy,
  type DeploymentRequest,
  type DeploymentRequestInput,
  type DeploymentRequestInvalid,
  type DeploymentTarget,
  deploymentDefaults,
  deploymentLimits,
  deploymentRequestSchema,
  type FailureType,
  failureTypes,
  parseDeploymentRequest,
  type RolloutPolicy,
  thingNameSchema,
} from './request.ts';
export {
  ACCOUNT_CAP_RECHECK_MS,
  burstFor,
  CREDIT_PER_DEVICE,
  effectiveRatePerMinute,
  planRollout,
  type RolloutBucket,
  type RolloutPlan,
  type RolloutPlanInput,
  type RolloutWait,
  rampedRatePerMinute,
} from './rollout.ts';
export {
  buildCancelDocument,
  buildDesiredOta,
  buildTrimDocument,
  DESIRED_OTA_BUDGET_BYTES,
  type DesiredDocument,
  type DesiredOta,
  type DesiredOtaInput,
  type DesiredTooLarge,
  desiredBelongsTo,
  jsonBytes,
  jsonDepth,
  type ManifestText,
  OTA_SHADOW_NAME,
  type OtaAction,
  REPORTED_OTA_BUDGET_BYTES,
  SHADOW_ENVELOPE_MARGIN_BYTES,
  SHADOW_MAX_DEPTH,
  SHADOW_STATE_LIMIT_BYTES,
  type ShadowUpdateDocument,
} from './shadow.ts';
export {
  type ExecutionState,
  executionStates,
  type InProgressState,
  inProgressStates,
  isAllowedTransition,
  isExecutionState,
  isForward,
  isInProgress,
  isTerminal,
  type TerminalState,
  type Transition,
  type TransitionReason,
  terminalStates,
} from './states.ts';
