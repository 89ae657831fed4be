/**
 * The orchestrator Lambda's entry point (bundled as `index.js`, handler `index.handler`). Its
 * settings come from the environment the CDK construct sets; a mistake there fails every
 * invocation with the setting named.
 */
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { Orchestrator, type OrchestratorResult } from './orchestrator.js';
import * as z from 'zod';
import { OrchestratorSettingsSchema, type OrchestratorSettings } from './orchestrator-settings.js';

function settingsFrom(env: NodeJS.ProcessEnv): OrchestratorSettings {
  const r = OrchestratorSettingsSchema.safeParse(env);
  if (!r.success)
    throw new Error(`the orchestrator's environment is not right: ${z.prettifyError(r.error)}`);
  return r.data;
}

let orchestrator: Orchestrator | undefined;

export async function handler(
  event: unknown,
  context: { invokedFunctionArn: string },
): Promise<OrchestratorResult> {
  orchestrator ??= new Orchestrator(settingsFrom(process.env), {
    dynamodb: new DynamoDBClient({}),
    autoScaling: new AutoScalingClient({}),
    ssm: new SSMClient({}),
    events: new EventBridgeClient({}),
    sns: new SNSClient({}),
  });
  return orchestrator.handle(event, context.invokedFunctionArn);
}
