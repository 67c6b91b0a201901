import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';

/** What a handler hands a run too large for its invocation to: a state machine execution. */
export interface StartExecutionInput {
  readonly stateMachineArn: string;
  /** Unique per state machine for 90 days: a repeated start with the same name and input is a no-op. */
  readonly name: string;
  readonly input: string;
}

/** Starts a Step Functions execution with the SDK; resolves with its ARN. Tests pass fakes instead. */
export async function startExecution(input: StartExecutionInput): Promise<string | undefined> {
  const client = new SFNClient({});
  try {
    return (await client.send(new StartExecutionCommand(input))).executionArn;
  } finally {
    client.destroy();
  }
}
