//! TestState: one state run alone, as AWS's TestState API runs it.

use crate::api::{opt_str, req_str, R};
use crate::{ApiError, Server};
use serde_json::{json, Map, Value};
use shoal_engine::{ExecutionInfo, Outcome};
use std::sync::Arc;

/// The name AWS gives the state in the single-state form (`$$.State.Name`).
const SINGLE_STATE_NAME: &str = "StateName";

#[derive(Debug, Clone, Copy, PartialEq)]
enum InspectionLevel {
    Info,
    Debug,
    Trace,
}

impl InspectionLevel {
    fn parse(p: &Value) -> R<InspectionLevel> {
        match opt_str(p, "inspectionLevel")? {
            None | Some("INFO") => Ok(InspectionLevel::Info),
            Some("DEBUG") => Ok(InspectionLevel::Debug),
            Some("TRACE") => Ok(InspectionLevel::Trace),
            Some(other) => Err(ApiError::new(
                "ValidationException",
                format!("1 validation error detected: Value '{other}' at 'inspectionLevel' failed to satisfy constraint: Member must satisfy enum value set: [INFO, DEBUG, TRACE]"),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TestStatus {
    Succeeded,
    Failed,
    Retriable,
    CaughtError,
}

impl TestStatus {
    fn as_str(self) -> &'static str {
        match self {
            TestStatus::Succeeded => "SUCCEEDED",
            TestStatus::Failed => "FAILED",
            TestStatus::Retriable => "RETRIABLE",
            TestStatus::CaughtError => "CAUGHT_ERROR",
        }
    }
}

/// A JSON object given as text in the request (`variables`, `context`).
fn object_field(p: &Value, k: &str) -> R<Option<Map<String, Value>>> {
    match opt_str(p, k)? {
        None => Ok(None),
        Some(t) => match serde_json::from_str::<Value>(t) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            _ => Err(ApiError::new(
                "ValidationException",
                format!("{k} must be a JSON object"),
            )),
        },
    }
}

/// Every state name a state may go to: Next, Default, each Choice's Next, each Catch's Next.
fn collect_targets(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("Next" | "Default", Value::String(s)) if !out.contains(s) => {
                        out.push(s.clone());
                    }
                    ("Choices" | "Catch", Value::Array(a)) => {
                        a.iter().for_each(|c| collect_targets(c, out))
                    }
                    _ => {}
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|c| collect_targets(c, out)),
        _ => {}
    }
}

/// The state named `name` anywhere in a machine, nested processors and branches too.
fn find_state(machine: &Value, name: &str) -> Option<Value> {
    let states = machine.get("States")?.as_object()?;
    if let Some(s) = states.get(name) {
        return Some(s.clone());
    }
    states.values().find_map(|s| {
        let nested = ["ItemProcessor", "Iterator"]
            .iter()
            .filter_map(|k| s.get(*k))
            .chain(
                s.get("Branches")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten(),
            );
        nested.into_iter().find_map(|m| find_state(m, name))
    })
}

/// `inspectionData` as the API sends it: data as JSON text, counts as numbers.
fn inspection_json(m: Map<String, Value>) -> Value {
    let out: Map<String, Value> = m
        .into_iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "maxConcurrency"
                | "toleratedFailureCount"
                | "toleratedFailurePercentage"
                | "errorDetails" => v,
                _ => Value::String(v.to_string()),
            };
            (k, v)
        })
        .collect();
    Value::Object(out)
}

impl Server {
    /// The state runs alone; every state it may go to is a stand-in that ends the
    /// test, so the state the execution enters next is `nextState`.
    pub(crate) async fn test_state(&self, p: &Value) -> R {
        let def_text = req_str(p, "definition")?;
        let level = InspectionLevel::parse(p)?;
        let (name, mut state) = match opt_str(p, "stateName")? {
            Some(name) => {
                // The full-definition form: the whole machine must be valid.
                Self::definition(p, false)?;
                let machine: Value = serde_json::from_str(def_text).map_err(|e| {
                    ApiError::new(
                        "InvalidDefinition",
                        format!("Invalid State Machine Definition: '{e}'"),
                    )
                })?;
                let mut state = find_state(&machine, name).ok_or_else(|| {
                    ApiError::new(
                        "ValidationException",
                        format!("State '{name}' does not exist in the definition"),
                    )
                })?;
                // The machine's QueryLanguage applies to the state unless it names its own.
                if let (Some(lang), Some(o)) = (machine.get("QueryLanguage"), state.as_object_mut())
                {
                    o.entry("QueryLanguage").or_insert_with(|| lang.clone());
                }
                (name.to_string(), state)
            }
            None => {
                let state: Value = serde_json::from_str(def_text).map_err(|e| {
                    ApiError::new(
                        "InvalidDefinition",
                        format!("Invalid State Definition: '{e}'"),
                    )
                })?;
                (SINGLE_STATE_NAME.to_string(), state)
            }
        };
        let Some(obj) = state.as_object_mut() else {
            return Err(ApiError::new(
                "InvalidDefinition",
                "the state definition must be a JSON object",
            ));
        };
        // A mocked Task calls nothing, so needs no role.
        let mocked = p.get("mock").is_some_and(|m| !m.is_null());
        if obj.get("Type").and_then(Value::as_str) == Some("Task")
            && opt_str(p, "roleArn")?.is_none()
            && !mocked
        {
            return Err(ApiError::new(
                "ValidationException",
                "RoleArn must be specified when testing a Task state",
            ));
        }
        obj.remove("Comment");
        // TestState does not retry: a retriable error is reported as RETRIABLE.
        let retriers = obj.remove("Retry");
        let ends = obj.get("End") == Some(&Value::Bool(true))
            || matches!(
                obj.get("Type").and_then(Value::as_str),
                Some("Succeed" | "Fail")
            );
        let mut targets: Vec<String> = Vec::new();
        collect_targets(&Value::Object(obj.clone()), &mut targets);
        let mut states = Map::new();
        for t in targets.iter().filter(|t| **t != name) {
            states.insert(t.clone(), json!({"Type": "Succeed"}));
        }
        states.insert(name.clone(), state);
        let machine_def = json!({"StartAt": name, "States": states});
        let parsed = shoal_asl::parse(&machine_def.to_string());
        let Some(machine) = parsed.machine.filter(|_| parsed.diagnostics.is_empty()) else {
            let problems: Vec<String> = parsed
                .diagnostics
                .iter()
                .map(|d| format!("{}: {} at {}", d.code, d.message, d.pointer))
                .collect();
            return Err(ApiError::new(
                "InvalidDefinition",
                format!(
                    "Invalid State Machine Definition: '{}'",
                    problems.join(", ")
                ),
            ));
        };
        let input: Value = serde_json::from_str(opt_str(p, "input")?.unwrap_or("{}"))
            .map_err(|e| ApiError::new("InvalidExecutionInput", format!("Invalid input: '{e}'")))?;
        let entropy = self.runtime.entropy();
        let execution_name = shoal_expr::uuid_v4(&entropy);
        let mut info = ExecutionInfo::local(
            "TestState",
            &execution_name,
            self.runtime.now_ms(),
            true,
            &entropy,
        );
        // AWS's TestState execution ARN names the machine and the execution only.
        {
            use shoal_asl::identity::{ACCOUNT, PARTITION, REGION};
            info.execution_arn = format!(
                "arn:{PARTITION}:states:{REGION}:{ACCOUNT}:express:{}:{execution_name}",
                info.state_machine_name
            );
        }
        if let Some(role) = opt_str(p, "roleArn")? {
            info.role_arn = role.to_string();
        }
        let mut exec =
            shoal_engine::Execution::new(Arc::new(machine), info, input, Box::new(entropy));
        if level != InspectionLevel::Info {
            exec.inspect();
        }
        if let Some(vars) = object_field(p, "variables")? {
            exec.set_variables(vars);
        }
        if let Some(ctx) = object_field(p, "context")? {
            exec.set_context(ctx);
        }
        let outcome = self.runtime.drive(&mut exec).await;
        let history = exec.history();
        let next = history
            .iter()
            .filter(|h| h.kind.ends_with("StateEntered"))
            .filter_map(|h| h.details.get("name").and_then(Value::as_str))
            .find(|n| *n != name)
            .map(str::to_string);
        // A failure the state caught: the last failure event before the stand-in.
        let caught = history
            .iter()
            .rev()
            .find(|h| h.kind.ends_with("Failed") && h.details.get("error").is_some())
            .filter(|_| next.is_some())
            .map(|h| {
                (
                    h.details["error"].as_str().unwrap_or_default().to_string(),
                    h.details
                        .get("cause")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                )
            });
        let mut v = Map::new();
        let status = match outcome {
            Outcome::Succeeded(out) => {
                v.insert("output".into(), json!(out.to_string()));
                if let Some((error, cause)) = caught {
                    v.insert("error".into(), json!(error));
                    v.insert("cause".into(), json!(cause.unwrap_or_default()));
                    TestStatus::CaughtError
                } else {
                    TestStatus::Succeeded
                }
            }
            Outcome::Failed(f) => {
                let retriable = retriers
                    .as_ref()
                    .and_then(Value::as_array)
                    .is_some_and(|rs| {
                        rs.iter().any(|r| {
                            r["ErrorEquals"].as_array().is_some_and(|es| {
                                es.iter().any(|e| {
                                    e == "States.ALL" || e.as_str() == Some(f.error.as_str())
                                })
                            })
                        })
                    });
                v.insert("error".into(), json!(f.error));
                v.insert("cause".into(), json!(f.cause.unwrap_or_default()));
                if retriable {
                    TestStatus::Retriable
                } else {
                    TestStatus::Failed
                }
            }
        };
        v.insert("status".into(), json!(status.as_str()));
        if !ends || status == TestStatus::CaughtError {
            if let Some(n) = next.filter(|_| status != TestStatus::Failed) {
                v.insert("nextState".into(), json!(n));
            }
        }
        if let Some(data) = exec.inspection() {
            v.insert("inspectionData".into(), inspection_json(data));
        }
        Ok(Value::Object(v))
    }
}
