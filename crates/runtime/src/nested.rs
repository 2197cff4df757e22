//! `arn:aws:states:::states:startExecution` with `.sync` and `.sync:2`, and the
//! request-response form for a state machine this shoal holds: the child runs here as
//! an execution of its own (listed, described, with its own history when there is a
//! store). A state machine this shoal does not hold is looked up with
//! DescribeStateMachine on the Step Functions endpoint and its definition run here.

use crate::Runtime;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use shoal_asl::{Pattern, Resource};
use shoal_engine::{ExecutionInfo, Failure, Outcome};
use std::sync::Arc;

/// Which nested-execution form a resource is, if any.
pub(crate) fn nested_pattern(resource: &Resource) -> Option<Pattern> {
    match resource {
        Resource::Service {
            service,
            action,
            pattern,
            ..
        } if service == "states" && action == "startExecution" => Some(*pattern),
        _ => None,
    }
}

/// AWS's errors for StartExecution's parameters, as the optimized integration names them.
fn sfn_error(code: &str, message: String) -> Failure {
    Failure::new(
        format!("StepFunctions.{code}Exception"),
        format!("{message} (Service: AWSStepFunctions; Status Code: 400; Error Code: {code}; Request ID: 00000000-0000-0000-0000-000000000000; Proxy: null)"),
    )
}

struct Child {
    state_machine_arn: String,
    name: String,
    input: Value,
}

fn child_of(input: &Value, runtime: &Runtime) -> Result<Child, Failure> {
    let state_machine_arn = input
        .get("StateMachineArn")
        .and_then(Value::as_str)
        .ok_or_else(|| sfn_error("InvalidArn", "Invalid Arn: 'null'".into()))?
        .to_string();
    let name = match input.get("Name") {
        Some(Value::String(n)) => n.clone(),
        _ => shoal_expr::uuid_v4(&runtime.entropy()),
    };
    // Input is a JSON text; a JSON value is sent as its text, as the SDKs do.
    let input = match input.get("Input") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
            sfn_error(
                "InvalidExecutionInput",
                format!("Invalid State Machine Execution Input: '{e}'"),
            )
        })?,
        Some(v) => v.clone(),
    };
    Ok(Child {
        state_machine_arn,
        name,
        input,
    })
}

fn secs_ms(ms: i64) -> Value {
    json!(ms)
}

impl Runtime {
    /// Whether this shoal holds a state machine, so that its executions run here.
    pub(crate) fn holds(&self, state_machine_arn: &str) -> bool {
        self.db
            .as_ref()
            .and_then(|db| db.state_machine(state_machine_arn).ok().flatten())
            .is_some()
    }

    /// Runs a nested execution for the parent's Task; boxed, because the child is
    /// driven by the same loop as its parent.
    pub(crate) fn nested(
        self: Arc<Self>,
        pattern: Pattern,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, Failure>> {
        Box::pin(async move {
            let child = child_of(&input, &self)?;
            let (sm_name, definition) = self.definition_of(&child.state_machine_arn).await?;
            let parsed = shoal_asl::parse(&definition);
            let machine = match parsed.machine {
                Some(m) if parsed.diagnostics.is_empty() => Arc::new(m),
                _ => {
                    return Err(sfn_error(
                        "InvalidDefinition",
                        format!(
                            "the definition of '{}' does not parse",
                            child.state_machine_arn
                        ),
                    ))
                }
            };
            let start_ms = self.now_ms();
            let mut info =
                ExecutionInfo::local(&sm_name, &child.name, start_ms, false, &self.entropy());
            info.state_machine_arn = child.state_machine_arn.clone();
            let execution_arn = info.execution_arn.clone();
            let child_input = child.input.clone();
            let run = {
                let rt = self.clone();
                async move {
                    if rt.db.is_some() {
                        let begun = rt
                            .begin_blocking(machine, definition, info, child_input)
                            .await
                            .map_err(|e| match e {
                                crate::Error::Store(
                                    shoal_store::Error::ExecutionAlreadyExists(arn),
                                ) => sfn_error(
                                    "ExecutionAlreadyExists",
                                    format!("Execution Already Exists: '{arn}'"),
                                ),
                                other => Failure::runtime(other.to_string()),
                            })?;
                        rt.run_begun(begun)
                            .await
                            .map_err(|e| Failure::runtime(e.to_string()))
                    } else {
                        Ok(rt.run(machine, info, child_input).await)
                    }
                }
            };
            if pattern == Pattern::RequestResponse {
                // Started, not awaited: the parent goes on with the execution's ARN.
                tokio::spawn(run);
                return Ok(json!({"ExecutionArn": execution_arn, "StartDate": secs_ms(start_ms)}));
            }
            let outcome = run.await?;
            let stop_ms = self.now_ms();
            let as_text = pattern == Pattern::Sync;
            let shaped = |v: &Value| {
                if as_text {
                    Value::String(v.to_string())
                } else {
                    v.clone()
                }
            };
            let mut d = json!({
                "ExecutionArn": execution_arn,
                "Input": shaped(&child.input),
                "InputDetails": {"Included": true},
                "Name": child.name,
                "StartDate": secs_ms(start_ms),
                "StateMachineArn": child.state_machine_arn,
                "StopDate": secs_ms(stop_ms),
            });
            match outcome {
                Outcome::Succeeded(out) => {
                    d["Output"] = shaped(&out);
                    d["OutputDetails"] = json!({"Included": true});
                    d["Status"] = json!("SUCCEEDED");
                    Ok(d)
                }
                Outcome::Failed(f) => {
                    d["Status"] = json!("FAILED");
                    d["Error"] = json!(f.error);
                    if let Some(c) = f.cause {
                        d["Cause"] = json!(c);
                    }
                    Err(Failure::new("States.TaskFailed", shoal_expr::compact(&d)))
                }
            }
        })
    }

    /// A state machine's name and definition: from this shoal's store, else from the
    /// Step Functions endpoint.
    async fn definition_of(&self, arn: &str) -> Result<(String, String), Failure> {
        if let Some(rec) = self
            .db
            .as_ref()
            .and_then(|db| db.state_machine(arn).ok().flatten())
        {
            return Ok((rec.name, rec.definition));
        }
        self.tasks.services().state_machine(arn).await
    }
}
