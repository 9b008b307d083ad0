/**
 * Result codes the agent reports, following Azure Device Update (ADU) where it has one
 * (/work/shared/ADU-REFERENCE.md §1): a code > 0 is success, <= 0 failure. Extended result codes
 * (ERC) are the agent's own, in ADU's layout `facility << 28 | component << 20 | value`, under
 * facility 0xA (not used by ADU), so an operator can tell an agent fault from a handler's.
 */
export const resultCodes = {
  failure: 0,
  failureCanceled: -1,
  success: 1,
  downloadSuccess: 500,
  downloadSkippedFileExists: 502,
  installSuccess: 600,
  installSkippedAlreadyInstalled: 603,
  installSkippedNoMatchingComponents: 604,
  installRequiredImmediateReboot: 605,
  installRequiredReboot: 606,
  applySuccess: 700,
  applyRequiredImmediateReboot: 705,
  applyRequiredReboot: 706,
  cancelSuccess: 800,
  cancelUnableToCancel: 801,
  isInstalledInstalled: 900,
  isInstalledNotInstalled: 901,
} as const;

export const isSuccessCode = (code: number): boolean => code > 0;

/** Codes by which a handler asks for a reboot after its install or apply (ADU 605/606/705/706). */
export function requiresReboot(code: number): boolean {
  return (
    code === resultCodes.installRequiredImmediateReboot ||
    code === resultCodes.installRequiredReboot ||
    code === resultCodes.applyRequiredImmediateReboot ||
    code === resultCodes.applyRequiredReboot
  );
}

const FACILITY = 0xa;
const erc = (component: number, value: number): number =>
  ((FACILITY << 28) | (component << 20) | value) >>> 0;

/**
 * The agent's stable failure codes and their ERCs. The text code goes first in `resultDetails`
 * (`SIGNATURE_BAD_SIGNATURE: ...`), so a person reading the shadow need not decode numbers.
 */
export const agentErrors = {
  // 0x01: the desired document and the manifest
  DESIRED_INVALID: erc(0x01, 0x001),
  MANIFEST_INVALID: erc(0x01, 0x002),
  SIGNATURE_MALFORMED: erc(0x01, 0x010),
  SIGNATURE_UNSUPPORTED_ALGORITHM: erc(0x01, 0x011),
  SIGNATURE_UNKNOWN_KEY: erc(0x01, 0x012),
  SIGNATURE_BAD_SIGNATURE: erc(0x01, 0x013),
  SIGNATURE_EXPIRED: erc(0x01, 0x014),
  SIGNATURE_NOT_YET_VALID: erc(0x01, 0x015),
  SIGNATURE_MANIFEST_MISMATCH: erc(0x01, 0x016),
  SIGNATURE_UPDATE_MISMATCH: erc(0x01, 0x017),
  SIGNATURE_FILES_MISMATCH: erc(0x01, 0x018),
  SIGNATURE_DEPLOYMENT_MISMATCH: erc(0x01, 0x019),
  UPDATE_MISMATCH: erc(0x01, 0x020),
  INCOMPATIBLE: erc(0x01, 0x021),
  DOWNGRADE_REFUSED: erc(0x01, 0x022),
  CHILD_MANIFEST_INVALID: erc(0x01, 0x023),
  // 0x02: download authorization and downloads
  AUTHORIZATION_REJECTED: erc(0x02, 0x001),
  AUTHORIZATION_TIMEOUT: erc(0x02, 0x002),
  AUTHORIZATION_INVALID: erc(0x02, 0x003),
  FILE_NOT_AUTHORIZED: erc(0x02, 0x004),
  INSUFFICIENT_DISK_SPACE: erc(0x02, 0x010),
  HASH_MISMATCH: erc(0x02, 0x011),
  SIZE_MISMATCH: erc(0x02, 0x012),
  DOWNLOAD_FAILED: erc(0x02, 0x013),
  FILE_NOT_SIGNED: erc(0x02, 0x014),
  // 0x03: steps and handlers
  UNKNOWN_HANDLER: erc(0x03, 0x001),
  PATH_REFUSED: erc(0x03, 0x002),
  STEP_FILE_MISSING: erc(0x03, 0x003),
  HANDLER_PROPERTIES_INVALID: erc(0x03, 0x004),
  HANDLER_CRASHED: erc(0x03, 0x005),
  /** The low byte carries the script's exit code, as ADU does. */
  SCRIPT_EXIT_CODE: erc(0x03, 0x100),
  SCRIPT_RESULT_FILE: erc(0x03, 0x011),
  SCRIPT_TIMEOUT: erc(0x03, 0x012),
  SCRIPT_START_FAILED: erc(0x03, 0x013),
  SCRIPT_RESULT_ERC_ZERO: erc(0x03, 0x014),
  APT_MISSING_INSTALLED_CRITERIA: erc(0x03, 0x020),
  APT_MANIFEST_INVALID: erc(0x03, 0x021),
  APT_COMMAND_FAILED: erc(0x03, 0x022),
  FILE_DESTINATION_UNKNOWN: erc(0x03, 0x030),
  FILE_INSTALL_FAILED: erc(0x03, 0x031),
  SIMULATED_FAILURE: erc(0x03, 0x040),
  // 0x04: the workflow
  CANCELED: erc(0x04, 0x001),
  REBOOT_NOT_CONFIRMED: erc(0x04, 0x002),
  REBOOT_FAILED: erc(0x04, 0x003),
  INTERNAL: erc(0x04, 0x0ff),
} as const;

export type AgentErrorCode = keyof typeof agentErrors;

/** An expected failure of the agent: a stable code, its ERC, and words a person can act on. */
export interface AgentError {
  readonly code: AgentErrorCode;
  readonly message: string;
  /** False when trying again cannot help (no disk space, bad signature, ...). @default true */
  readonly retryable?: boolean;
}

export const agentError = (code: AgentErrorCode, message: string, retryable?: boolean): AgentError =>
  retryable === undefined ? { code, message } : { code, message, retryable };

/** A result in ADU's shape: what handlers return and what goes into `lastResult`/`stepResults`. */
export interface StepResult {
  readonly resultCode: number;
  readonly extendedResultCode: number;
  readonly resultDetails?: string;
}

export function failureOf(error: AgentError): StepResult {
  return {
    resultCode: error.code === 'CANCELED' ? resultCodes.failureCanceled : resultCodes.failure,
    extendedResultCode: agentErrors[error.code],
    resultDetails: `${error.code}: ${error.message}`,
  };
}
