// A Lambda function for shoal's tests, run by the real aws-lambda-ric from npm. Same ops
// as functions/testfn: echo (default), fail, sleep, crash; `log` appends a line per call;
// `print` writes its text to the log.
"use strict";
const fs = require("fs");

exports.handler = async (event, context) => {
  if (event && event.log) fs.appendFileSync(event.log, context.awsRequestId + "\n");
  if (event && event.print) console.log(event.print);
  const op = (event && event.op) || "echo";
  if (op === "fail") {
    const e = new Error("the handler failed on purpose");
    e.name = "CustomFailure";
    throw e;
  }
  if (op === "sleep") await new Promise(r => setTimeout(r, event.ms || 1000));
  if (op === "crash") process.exit(3);
  return event;
};
