import { mkdir } from 'node:fs/promises';
import { ok } from '../lambdas/domain/result.ts';
import { Agent } from './agent.ts';
import { openAuthorizationChannel, openShadowChannel } from './channels.ts';
import { agentError } from './codes.ts';
import type { AgentConfig } from './config.ts';
import { APT_HANDLER_ID, makeAptHandler } from './handlers/apt.ts';
import { FILE_HANDLER_ID, makeFileHandler } from './handlers/file.ts';
import { makeScriptHandler, SCRIPT_HANDLER_ID } from './handlers/script.ts';
import type { HandlerRegistry, StepHandler } from './handlers/types.ts';
import { Journal } from './journal.ts';
import { type Logger, makeLogger } from './log.ts';
import { DeviceConnection } from './mqtt.ts';
import { childEnvironment, runProcess } from './process.ts';

/** The built-in handlers for a configuration, plus any the caller adds (their ids win). */
export function defaultHandlers(
  config: AgentConfig,
  extra: Readonly<Record<string, StepHandler>> = {},
): HandlerRegistry {
  const handlers = new Map<string, StepHandler>([
    [SCRIPT_HANDLER_ID, makeScriptHandler(config.handlers.script ?? {})],
    [APT_HANDLER_ID, makeAptHandler({ stateDir: config.stateDir, ...(config.handlers.apt ?? {}) })],
    [FILE_HANDLER_ID, makeFileHandler({ destinations: config.handlers.file?.destinations ?? {} })],
    ...Object.entries(extra),
  ]);
  return handlers;
}

export interface RunningAgent {
  readonly agent: Agent;
  readonly connection: DeviceConnection;
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly handlers?: HandlerRegistry;
  readonly log?: Logger;
  readonly now?: () => number;
  /** Passed to the agent (tests shorten timeouts). */
  readonly channelTimeoutMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * Starts one agent: journal, MQTT connection (client id = thing name), the shadow and
 * authorization channels, and the agent, which reads its shadow now and after every reconnect.
 */
export async function startAgent(config: AgentConfig, options: StartOptions = {}): Promise<RunningAgent> {
  const log = options.log ?? makeLogger({ level: config.logLevel, base: { thingName: config.thingName } });
  await mkdir(config.workDir, { recursive: true, mode: 0o700 });
  const journal = await Journal.open(config.stateDir);
  const connection = await DeviceConnection.open(config.mqtt, config.thingName, log, options.signal);
  const channelOptions = options.channelTimeoutMs ? { timeoutMs: options.channelTimeoutMs } : {};
  const shadow = await openShadowChannel(connection, config.thingName, channelOptions);
  const authorization = await openAuthorizationChannel(connection, config.thingName, channelOptions);
  const agent = new Agent({
    thingName: config.thingName,
    journal,
    shadow,
    authorization,
    handlers: options.handlers ?? defaultHandlers(config),
    components: config.components,
    compatibility: config.compatibility,
    trustedKeys: config.trustedKeys,
    workDir: config.workDir,
    ...(config.s3Endpoint ? { s3Endpoint: config.s3Endpoint } : {}),
    now: options.now ?? Date.now,
    log,
    progressIntervalMs: config.progressIntervalMs,
    requestReboot: async () => {
      if (!config.rebootCommand) {
        log.warn('a step asked for a reboot: restart the device; the update resumes after it');
        return ok(undefined);
      }
      const [command, ...args] = config.rebootCommand;
      const outcome = await runProcess(command ?? '', args, {
        cwd: '/',
        env: childEnvironment,
        timeoutMs: 60_000,
      });
      return outcome.exitCode === 0
        ? ok(undefined)
        : {
            ok: false,
            error: agentError('REBOOT_FAILED', `the reboot command failed (${outcome.exitCode})`),
          };
    },
  });
  connection.onReconnected(() => void agent.sync());
  await agent.sync();
  return {
    agent,
    connection,
    async stop() {
      await agent.stop();
      await connection.close();
    },
  };
}
