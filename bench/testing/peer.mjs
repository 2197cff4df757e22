// The six cases of examples/testing/order.test.yaml, N times over, on
// aws-local-stepfunctions (npm) with its Task overrides bound to local functions
// and retry pauses overridden to 0: the same work `shoal test` does for the suite
// bench/testing/run.sh generates. Each execution's status and error is checked.
//   node peer.mjs ORDER_ASL_JSON N
import { readFileSync } from 'node:fs';

// aws-local-stepfunctions 3 calls Promise.withResolvers (Node 22); Debian's Node 20
// lacks it, so it is given here before the package loads.
Promise.withResolvers ??= () => {
  let resolve, reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
};
const { StateMachine } = await import('aws-local-stepfunctions');

const [definitionFile, n] = [process.argv[2], Number(process.argv[3])];
const definition = JSON.parse(readFileSync(definitionFile, 'utf8'));
const machine = new StateMachine(definition, { validationOptions: { checkArn: false } });

class TaskError extends Error {
  constructor(name, cause) { super(cause); this.name = name; }
}
// One answer per call, the last repeating: the suite's inline mocks.
const calls = (...answers) => {
  let i = 0;
  return async () => {
    const a = answers[Math.min(i++, answers.length - 1)];
    if (a instanceof TaskError) throw a;
    return a;
  };
};
const valid = { StatusCode: 200, Payload: { valid: true, total: 42.5 } };
const sent = { MD5OfMessageBody: '0f9bd5c8ba4ab3b0bb8c8e7d6ff3a5a0', MessageId: 'msg-1' };
const busy = () => new TaskError('DynamoDB.ProvisionedThroughputExceededException', 'busy');
const scenarios = [
  { input: { orderId: 'o-1' }, want: 'SUCCEEDED', mocks: () => ({ ValidateOrder: calls(valid), SaveOrder: calls({}), QueueShipment: calls(sent) }) },
  { input: { orderId: 'o-2' }, want: 'Order.Invalid', mocks: () => ({ ValidateOrder: calls({ StatusCode: 200, Payload: { valid: false, total: 0 } }) }) },
  { input: { orderId: 'o-3' }, want: 'SUCCEEDED', mocks: () => ({
    ValidateOrder: calls(new TaskError('Lambda.TooManyRequestsException', 'Rate exceeded.'), new TaskError('Lambda.TooManyRequestsException', 'Rate exceeded.'), { StatusCode: 200, Payload: { valid: true, total: 10 } }),
    SaveOrder: calls({}), QueueShipment: calls({ MessageId: 'msg-3' }) }) },
  { input: { orderId: 'o-4' }, want: 'Order.Failed', mocks: () => ({ ValidateOrder: calls(new TaskError('Lambda.Unknown', 'The function crashed')), NotifyFailure: calls({ MessageId: 'fail-4' }) }) },
  { input: { orderId: 'o-5' }, want: 'SUCCEEDED', mocks: () => ({ ValidateOrder: calls(valid), SaveOrder: calls(busy(), {}), QueueShipment: calls(sent) }) },
  { input: { orderId: 'o-6' }, want: 'Order.Failed', mocks: () => ({ ValidateOrder: calls(valid), SaveOrder: calls(busy()), NotifyFailure: calls({ MessageId: 'fail-6' }) }) },
];
const noPause = { ValidateOrder: 0, SaveOrder: 0 };

const started = process.hrtime.bigint();
const runs = [];
for (let i = 0; i < n; i++) {
  const s = scenarios[i % scenarios.length];
  const execution = machine.run(s.input, { overrides: { taskResourceLocalHandlers: s.mocks(), retryIntervalOverrides: noPause } });
  runs.push(execution.result.then(() => 'SUCCEEDED', (e) => String(e.cause?.name ?? e.name))
    .then((got) => ({ got, want: s.want })));
}
const results = await Promise.all(runs);
const ms = Number(process.hrtime.bigint() - started) / 1e6;
const wrong = results.filter((r) => r.got !== r.want);
console.log(JSON.stringify({ cases: n, ms, wrong: wrong.length, sample: wrong.slice(0, 3) }));
