// The AWS SDK for JavaScript v3 (@aws-sdk/client-sfn) against `shoal serve`: every
// operation shoal serves, with the SDK's typed errors, its Date fields and the
// request id of each answer. Exits non-zero on the first failed check.
//   node js_sdk_client.mjs ENDPOINT SDK_NODE_MODULES
import { createRequire } from 'node:module';

const [endpoint, modules] = process.argv.slice(2);
const require = createRequire(`${modules}/`);
const sfn = require('@aws-sdk/client-sfn');
const client = new sfn.SFNClient({
  endpoint,
  region: 'us-east-1',
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  // TestState and StartSyncExecution would otherwise go to sync-<host>.
  disableHostPrefix: true,
  maxAttempts: 1,
});
const ROLE = 'arn:aws:iam::123456789012:role/js';
let checks = 0;

function check(cond, what) {
  if (!cond) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
  checks += 1;
}

const requestIds = new Set();
async function call(Command, input) {
  const out = await client.send(new Command(input));
  check(typeof out.$metadata.requestId === 'string' && out.$metadata.requestId.length > 0,
    `${Command.name} has a request id`);
  requestIds.add(out.$metadata.requestId);
  return out;
}

async function fails(Command, input, ErrorClass) {
  try {
    await client.send(new Command(input));
  } catch (e) {
    check(e instanceof ErrorClass, `${Command.name} raises ${ErrorClass.name}, got ${e.name}: ${e.message}`);
    check(e.$metadata?.requestId?.length > 0, `${Command.name}'s ${e.name} has a request id`);
    check(e.$metadata?.httpStatusCode === 400, `${e.name} is a 400`);
    return e;
  }
  check(false, `${Command.name} should raise ${ErrorClass.name}`);
}

async function finish(executionArn) {
  for (let i = 0; i < 600; i++) {
    const d = await call(sfn.DescribeExecutionCommand, { executionArn });
    if (d.status !== 'RUNNING') return d;
    await new Promise((r) => setTimeout(r, 50));
  }
  check(false, `${executionArn} ends`);
}

const pass = JSON.stringify({ StartAt: 'P', States: { P: { Type: 'Pass', Result: { v: 1 }, ResultPath: '$.r', End: true } } });

// State machines, versions, aliases, tags.
const created = await call(sfn.CreateStateMachineCommand, { name: 'js-machine', definition: pass, roleArn: ROLE, tags: [{ key: 'team', value: 'a' }] });
check(created.creationDate instanceof Date, 'creationDate is a Date');
const machineArn = created.stateMachineArn;
const described = await call(sfn.DescribeStateMachineCommand, { stateMachineArn: machineArn });
check(described.definition === pass && described.status === 'ACTIVE' && described.type === 'STANDARD', 'DescribeStateMachine');
check(described.creationDate instanceof Date, 'DescribeStateMachine creationDate is a Date');
const updated = await call(sfn.UpdateStateMachineCommand, { stateMachineArn: machineArn, definition: pass, publish: true, versionDescription: 'v1' });
check(updated.updateDate instanceof Date && updated.stateMachineVersionArn === `${machineArn}:1`, 'UpdateStateMachine publishes version 1');
const listed = await call(sfn.ListStateMachinesCommand, {});
check(listed.stateMachines.some((m) => m.stateMachineArn === machineArn && m.creationDate instanceof Date), 'ListStateMachines');
const same = await call(sfn.PublishStateMachineVersionCommand, { stateMachineArn: machineArn });
check(same.stateMachineVersionArn === `${machineArn}:1`, 'publishing an unchanged revision gives its version again');
await call(sfn.UpdateStateMachineCommand, { stateMachineArn: machineArn, definition: pass.replace('"v":1', '"v":2') });
const v2 = await call(sfn.PublishStateMachineVersionCommand, { stateMachineArn: machineArn, description: 'v2' });
check(v2.stateMachineVersionArn === `${machineArn}:2` && v2.creationDate instanceof Date, 'PublishStateMachineVersion');
const versions = await call(sfn.ListStateMachineVersionsCommand, { stateMachineArn: machineArn });
check(versions.stateMachineVersions.length === 2, 'ListStateMachineVersions');
const alias = await call(sfn.CreateStateMachineAliasCommand, {
  name: 'live', routingConfiguration: [{ stateMachineVersionArn: `${machineArn}:1`, weight: 100 }],
});
check(alias.stateMachineAliasArn === `${machineArn}:live` && alias.creationDate instanceof Date, 'CreateStateMachineAlias');
await call(sfn.UpdateStateMachineAliasCommand, { stateMachineAliasArn: alias.stateMachineAliasArn, description: 'the live one' });
const da = await call(sfn.DescribeStateMachineAliasCommand, { stateMachineAliasArn: alias.stateMachineAliasArn });
check(da.description === 'the live one' && da.updateDate instanceof Date, 'DescribeStateMachineAlias after UpdateStateMachineAlias');
const aliases = await call(sfn.ListStateMachineAliasesCommand, { stateMachineArn: machineArn });
check(aliases.stateMachineAliases.length === 1, 'ListStateMachineAliases');
await call(sfn.TagResourceCommand, { resourceArn: machineArn, tags: [{ key: 'env', value: 'test' }] });
await call(sfn.UntagResourceCommand, { resourceArn: machineArn, tagKeys: ['team'] });
const tags = await call(sfn.ListTagsForResourceCommand, { resourceArn: machineArn });
check(JSON.stringify(tags.tags) === JSON.stringify([{ key: 'env', value: 'test' }]), `tags: ${JSON.stringify(tags.tags)}`);

// Executions, through the alias.
const started = await call(sfn.StartExecutionCommand, { stateMachineArn: alias.stateMachineAliasArn, name: 'first', input: '{"a":1}' });
check(started.startDate instanceof Date, 'StartExecution startDate is a Date');
const done = await finish(started.executionArn);
check(done.status === 'SUCCEEDED' && JSON.parse(done.output).r.v === 1 && done.stopDate instanceof Date, 'the execution succeeds');
check(done.stateMachineAliasArn === alias.stateMachineAliasArn && done.stateMachineVersionArn === `${machineArn}:1`, 'it ran through the alias');
const forExec = await call(sfn.DescribeStateMachineForExecutionCommand, { executionArn: started.executionArn });
check(forExec.definition === pass && forExec.updateDate instanceof Date, 'DescribeStateMachineForExecution');
const history = await call(sfn.GetExecutionHistoryCommand, { executionArn: started.executionArn });
check(history.events[0].type === 'ExecutionStarted' && history.events[0].timestamp instanceof Date, 'GetExecutionHistory');
check(history.events.at(-1).type === 'ExecutionSucceeded', 'the history ends with ExecutionSucceeded');
const executions = await call(sfn.ListExecutionsCommand, { stateMachineArn: machineArn });
check(executions.executions.some((e) => e.executionArn === started.executionArn), 'ListExecutions');
await fails(sfn.StartExecutionCommand, { stateMachineArn: machineArn, name: 'first', input: '{"a":2}' }, sfn.ExecutionAlreadyExists);
await fails(sfn.DescribeStateMachineCommand, { stateMachineArn: `${machineArn}-nope` }, sfn.StateMachineDoesNotExist);
await fails(sfn.DescribeExecutionCommand, { executionArn: 'arn:aws:states:us-east-1:123456789012:execution:js-machine:nope' }, sfn.ExecutionDoesNotExist);
await fails(sfn.CreateStateMachineCommand, { name: 'bad', definition: '{"StartAt":"X","States":{}}', roleArn: ROLE }, sfn.InvalidDefinition);
await fails(sfn.CreateStateMachineCommand, { name: 'bad name!', definition: pass, roleArn: ROLE }, sfn.InvalidName);
await fails(sfn.DescribeStateMachineCommand, { stateMachineArn: 'not-an-arn' }, sfn.InvalidArn);

// Stop, redrive.
const wait = await call(sfn.CreateStateMachineCommand, { name: 'js-wait', roleArn: ROLE, definition: JSON.stringify({ StartAt: 'W', States: { W: { Type: 'Wait', Seconds: 600, End: true } } }) });
const waiting = await call(sfn.StartExecutionCommand, { stateMachineArn: wait.stateMachineArn });
const stopped = await call(sfn.StopExecutionCommand, { executionArn: waiting.executionArn, error: 'Stop.It', cause: 'enough' });
check(stopped.stopDate instanceof Date, 'StopExecution');
const aborted = await finish(waiting.executionArn);
check(aborted.status === 'ABORTED' && aborted.error === 'Stop.It', `the stopped execution is ABORTED: ${aborted.status}`);
const failing = await call(sfn.CreateStateMachineCommand, { name: 'js-fail', roleArn: ROLE, definition: JSON.stringify({ StartAt: 'F', States: { F: { Type: 'Fail', Error: 'E', Cause: 'C' } } }) });
const failed = await call(sfn.StartExecutionCommand, { stateMachineArn: failing.stateMachineArn });
const fd = await finish(failed.executionArn);
check(fd.status === 'FAILED' && fd.error === 'E' && fd.cause === 'C', 'a failed execution');
const redriven = await call(sfn.RedriveExecutionCommand, { executionArn: failed.executionArn });
check(redriven.redriveDate instanceof Date, 'RedriveExecution');
const again = await finish(failed.executionArn);
check(again.redriveCount === 1 && again.status === 'FAILED', `after the redrive: ${again.redriveCount} ${again.status}`);

// Express and StartSyncExecution.
const express = await call(sfn.CreateStateMachineCommand, { name: 'js-express', type: 'EXPRESS', definition: pass, roleArn: ROLE });
const sync = await call(sfn.StartSyncExecutionCommand, { stateMachineArn: express.stateMachineArn, input: '{}' });
check(sync.status === 'SUCCEEDED' && JSON.parse(sync.output).r.v === 1 && sync.startDate instanceof Date, 'StartSyncExecution');
check(/^arn:aws:states:us-east-1:123456789012:express:js-express:[^:]+:[0-9a-f-]{36}$/.test(sync.executionArn), `an express execution ARN has AWS's form: ${sync.executionArn}`);
await fails(sfn.StartSyncExecutionCommand, { stateMachineArn: machineArn }, sfn.StateMachineTypeNotSupported);

// Map runs.
const map = await call(sfn.CreateStateMachineCommand, {
  name: 'js-map', roleArn: ROLE, definition: JSON.stringify({
    StartAt: 'M', States: { M: { Type: 'Map', ItemsPath: '$.items', MaxConcurrency: 2, End: true,
      ItemProcessor: { ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' }, StartAt: 'P', States: { P: { Type: 'Pass', End: true } } } } },
  }),
});
const mapped = await call(sfn.StartExecutionCommand, { stateMachineArn: map.stateMachineArn, input: JSON.stringify({ items: [1, 2, 3] }) });
check((await finish(mapped.executionArn)).status === 'SUCCEEDED', 'the map execution succeeds');
const runs = await call(sfn.ListMapRunsCommand, { executionArn: mapped.executionArn });
check(runs.mapRuns.length === 1 && runs.mapRuns[0].startDate instanceof Date, 'ListMapRuns');
const mapRunArn = runs.mapRuns[0].mapRunArn;
const run = await call(sfn.DescribeMapRunCommand, { mapRunArn });
check(run.itemCounts.succeeded === 3 && run.status === 'SUCCEEDED', `DescribeMapRun: ${JSON.stringify(run.itemCounts)}`);
await fails(sfn.UpdateMapRunCommand, { mapRunArn: `${mapRunArn}x`, maxConcurrency: 5 }, sfn.ResourceNotFound);

// Validation and TestState.
const ok = await call(sfn.ValidateStateMachineDefinitionCommand, { definition: pass });
check(ok.result === 'OK', 'ValidateStateMachineDefinition OK');
const bad = await call(sfn.ValidateStateMachineDefinitionCommand, { definition: '{"StartAt":"X","States":{}}' });
check(bad.result === 'FAIL' && bad.diagnostics.length > 0 && bad.diagnostics[0].location, 'ValidateStateMachineDefinition FAIL with locations');
const tested = await call(sfn.TestStateCommand, { definition: JSON.stringify({ Type: 'Pass', Result: 1, End: true }), roleArn: ROLE, input: '{}' });
check(tested.status === 'SUCCEEDED' && tested.output === '1', `TestState: ${JSON.stringify(tested)}`);

// Task tokens: AWS's errors for a token shoal never made.
await fails(sfn.SendTaskSuccessCommand, { taskToken: 'not-a-token', output: '{}' }, sfn.InvalidToken);
await fails(sfn.SendTaskFailureCommand, { taskToken: 'not-a-token' }, sfn.InvalidToken);
await fails(sfn.SendTaskHeartbeatCommand, { taskToken: 'not-a-token' }, sfn.InvalidToken);

// Deletes.
await call(sfn.DeleteStateMachineAliasCommand, { stateMachineAliasArn: alias.stateMachineAliasArn });
await call(sfn.DeleteStateMachineVersionCommand, { stateMachineVersionArn: `${machineArn}:2` });
await call(sfn.DeleteStateMachineCommand, { stateMachineArn: machineArn });
const gone = await call(sfn.DescribeStateMachineCommand, { stateMachineArn: machineArn }).catch((e) => e);
check(gone instanceof sfn.StateMachineDoesNotExist || gone.status === 'DELETING', `a deleted machine: ${gone.name ?? gone.status}`);
check(requestIds.size > 40, `every answer had its own request id (${requestIds.size})`);
console.log(`all ${checks} checks passed`);
