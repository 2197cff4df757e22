//! The operations, with AWS's request fields, response shapes and error codes.

use crate::{ApiError, Server};
use serde_json::{json, Value};
use shoal_engine::{ExecutionInfo, Outcome};
use shoal_runtime::MapRunUpdate;
use shoal_store::ExecutionStatus;
use shoal_store::{ChildExecution, ExecutionOrigin, ExecutionRecord, HistoryRow, MapRunRecord};
use std::sync::Arc;

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
const MAX_DEFINITION: usize = 1024 * 1024;
const MAX_INPUT: usize = 256 * 1024;

pub(crate) type R<T = Value> = Result<T, ApiError>;

/// The EXPRESS-only rules, on a definition's text (JSON; a YAML one has no such rule
/// checked here).
fn express_diagnostics(text: &str) -> Vec<shoal_asl::Diagnostic> {
    serde_json::from_str::<Value>(text)
        .map(|v| shoal_asl::express_diagnostics(&v))
        .unwrap_or_default()
}

pub(crate) fn secs(ms: i64) -> Value {
    serde_json::Number::from_f64(ms as f64 / 1000.0).map_or(Value::Null, Value::Number)
}

/// AWS's DescribeExecution shape (dates in epoch seconds, as the API sends them).
pub fn describe_execution(e: &ExecutionRecord) -> Value {
    let mut m = serde_json::Map::new();
    let s = |v: &str| Value::String(v.to_string());
    m.insert("executionArn".into(), s(&e.arn));
    m.insert("stateMachineArn".into(), s(&e.state_machine_arn));
    m.insert("name".into(), s(&e.name));
    m.insert("status".into(), s(e.status.as_str()));
    m.insert("startDate".into(), secs(e.start_ms));
    if let Some(t) = e.stop_ms {
        m.insert("stopDate".into(), secs(t));
    }
    m.insert("input".into(), s(&e.input));
    m.insert("inputDetails".into(), serde_json::json!({"included": true}));
    if let Some(o) = &e.output {
        m.insert("output".into(), s(o));
        m.insert(
            "outputDetails".into(),
            serde_json::json!({"included": true}),
        );
    }
    if let Some(err) = &e.error {
        m.insert("error".into(), s(err));
    }
    if let Some(c) = &e.cause {
        m.insert("cause".into(), s(c));
    }
    m.insert("redriveCount".into(), Value::from(e.redrive_count));
    if let Some(t) = e.redrive_ms {
        m.insert("redriveDate".into(), secs(t));
    }
    let redrivable = e.status.is_redrivable();
    m.insert(
        "redriveStatus".into(),
        s(if redrivable {
            "REDRIVABLE"
        } else {
            "NOT_REDRIVABLE"
        }),
    );
    if !redrivable {
        m.insert(
            "redriveStatusReason".into(),
            Value::String(format!("Execution is {} and cannot be redriven", e.status)),
        );
    }
    Value::Object(m)
}

/// DescribeExecution of a map run's STANDARD child: a failed one is redriven only
/// through its parent's map run, as on AWS.
fn describe_child(c: &ChildExecution) -> Value {
    let mut v = json!({
        "executionArn": c.arn, "stateMachineArn": c.state_machine_arn, "name": c.name,
        "status": c.status.as_str(), "startDate": secs(c.start_ms), "stopDate": secs(c.stop_ms),
        "input": c.input, "inputDetails": {"included": true},
        "mapRunArn": c.map_run, "redriveCount": 0,
    });
    if let Some(o) = &c.output {
        v["output"] = json!(o);
        v["outputDetails"] = json!({"included": true});
    }
    if let Some(e) = &c.error {
        v["error"] = json!(e);
    }
    if let Some(e) = &c.cause {
        v["cause"] = json!(e);
    }
    if c.status.is_redrivable() {
        v["redriveStatus"] = json!("REDRIVABLE_BY_MAP_RUN");
    } else {
        v["redriveStatus"] = json!("NOT_REDRIVABLE");
        v["redriveStatusReason"] =
            json!(format!("Execution is {} and cannot be redriven", c.status));
    }
    v
}

fn child_list_item(c: &ChildExecution) -> Value {
    json!({
        "executionArn": c.arn, "stateMachineArn": c.state_machine_arn, "name": c.name,
        "status": c.status.as_str(), "startDate": secs(c.start_ms), "stopDate": secs(c.stop_ms),
        "mapRunArn": c.map_run, "itemCount": c.items, "redriveCount": 0,
    })
}

/// The version and alias an execution was started through, when it was.
fn origin_fields(origin: &ExecutionOrigin, v: &mut Value) {
    if let Some(a) = &origin.version_arn {
        v["stateMachineVersionArn"] = json!(a);
    }
    if let Some(a) = &origin.alias_arn {
        v["stateMachineAliasArn"] = json!(a);
    }
}

pub(crate) fn validation(field: &str, constraint: &str) -> ApiError {
    ApiError::new(
        "ValidationException",
        format!("1 validation error detected: Value at '{field}' failed to satisfy constraint: {constraint}"),
    )
}

pub(crate) fn opt_str<'a>(p: &'a Value, k: &str) -> R<Option<&'a str>> {
    match p.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::new(
            "SerializationException",
            format!("{k} must be a string"),
        )),
    }
}

pub(crate) fn req_str<'a>(p: &'a Value, k: &str) -> R<&'a str> {
    opt_str(p, k)?.ok_or_else(|| validation(k, "Member must not be null"))
}

fn opt_u64(p: &Value, k: &str) -> R<Option<u64>> {
    match p.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::new(
                "SerializationException",
                format!("{k} must be a non-negative integer"),
            )
        }),
    }
}

fn opt_f64(p: &Value, k: &str) -> R<Option<f64>> {
    match p.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            ApiError::new("SerializationException", format!("{k} must be a number"))
        }),
    }
}

pub(crate) fn opt_bool(p: &Value, k: &str) -> R<bool> {
    match p.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::new(
            "SerializationException",
            format!("{k} must be a boolean"),
        )),
    }
}

/// AWS's rule for state machine, execution and map run names.
pub fn check_name(name: &str) -> R<()> {
    let bad = name.is_empty()
        || name.chars().count() > 80
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c));
    if bad {
        return Err(ApiError::new(
            "InvalidName",
            format!("Invalid Name: '{name}'"),
        ));
    }
    Ok(())
}

pub(crate) fn check_arn<'a>(arn: &'a str, kind: &str) -> R<&'a str> {
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() < 7 || parts[0] != "arn" || parts[2] != "states" || parts[5] != kind {
        return Err(ApiError::new("InvalidArn", format!("Invalid Arn: '{arn}'")));
    }
    Ok(arn)
}

/// Paging: the token is the offset of the next page.
pub(crate) fn page<T>(all: Vec<T>, p: &Value, default: usize) -> R<(Vec<T>, Option<String>)> {
    let max = match p.get("maxResults") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_i64() {
            Some(n) if n > 1000 => {
                return Err(ApiError::new(
                    "ValidationException",
                    format!("1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 1000"),
                ))
            }
            Some(n) if n < 0 => {
                return Err(ApiError::new(
                    "ValidationException",
                    format!("1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 0"),
                ))
            }
            Some(n) => n as usize,
            None => {
                return Err(ApiError::new(
                    "SerializationException",
                    "maxResults must be an integer",
                ))
            }
        },
    };
    let max = if max == 0 { default } else { max };
    let start = match opt_str(p, "nextToken")? {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| ApiError::new("InvalidToken", format!("Invalid Token: '{t}'")))?,
    };
    let total = all.len();
    let items: Vec<T> = all.into_iter().skip(start).take(max).collect();
    let next = (start + items.len() < total).then(|| (start + items.len()).to_string());
    Ok((items, next))
}

pub(crate) fn sm_arn(name: &str) -> String {
    format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}")
}

fn describe_map_run(m: &MapRunRecord, live: Option<(shoal_engine::maprun::Tally, u64)>) -> Value {
    let parse = |t: &str| serde_json::from_str::<Value>(t).unwrap_or_else(|_| json!({}));
    let (items, executions, max, percentage, count) = match &live {
        Some((t, max)) if m.status == "RUNNING" => (
            t.items.to_json(),
            t.executions.to_json(),
            *max,
            t.tolerance.percentage,
            t.tolerance.count.map(|c| c as u64),
        ),
        _ => (
            parse(&m.item_counts),
            parse(&m.execution_counts),
            m.max_concurrency,
            m.tolerated_percentage,
            m.tolerated_count,
        ),
    };
    let mut v = json!({
        "mapRunArn": m.arn, "executionArn": m.execution, "status": m.status,
        "startDate": secs(m.start_ms), "maxConcurrency": max,
        "toleratedFailurePercentage": percentage.unwrap_or(0.0),
        "toleratedFailureCount": count.unwrap_or(0),
        "itemCounts": items, "executionCounts": executions,
        "redriveCount": serde_json::from_str::<Value>(m.checkpoint.as_deref().unwrap_or("{}"))
            .ok().and_then(|c| c["generation"].as_u64()).unwrap_or(0),
    });
    if let Some(t) = m.stop_ms {
        v["stopDate"] = secs(t);
    }
    v
}

/// AWS's `previousEventId` for each row: the event before, except that the first
/// event after ExecutionStarted and an abort point at none, and that a Map or Parallel
/// state's exit, like the start of a Map iteration after one that succeeded, points
/// where the closing event before it points (the end of the last branch or iteration).
fn previous_event_ids(rows: &[HistoryRow]) -> Vec<u64> {
    let mut prev: Vec<u64> = Vec::with_capacity(rows.len());
    for (i, h) in rows.iter().enumerate() {
        let p = match i.checked_sub(1).map(|j| (j, &rows[j])) {
            _ if h.kind == "ExecutionAborted" => 0,
            None => h.id.saturating_sub(1),
            Some((_, b)) if b.kind == "ExecutionStarted" => 0,
            // An evaluation fails as its state starts: it follows what the state's
            // entry followed (a Wait's timestamp is read once it has entered).
            Some((j, b)) if h.kind == "EvaluationFailed" && b.kind.ends_with("StateEntered") => {
                if b.kind == "WaitStateEntered" {
                    b.id
                } else {
                    prev[j]
                }
            }
            // A Distributed Map's exit points where its map run's end points.
            Some((j, b))
                if h.kind == "MapStateExited"
                    && b.kind == "MapStateSucceeded"
                    && j > 0
                    && rows[j - 1].kind == "MapRunSucceeded" =>
            {
                prev[j - 1]
            }
            Some((j, b))
                if (matches!(h.kind.as_str(), "MapStateExited" | "ParallelStateExited")
                    && matches!(
                        b.kind.as_str(),
                        "MapStateSucceeded" | "ParallelStateSucceeded"
                    ))
                    || (h.kind == "MapIterationStarted" && b.kind == "MapIterationSucceeded")
                    // A Map retried starts again where its failed iteration ended, a
                    // Parallel where its branch failed, before that branch's abort.
                    || (matches!(h.kind.as_str(), "MapStateFailed" | "MapStateStarted")
                        && b.kind == "MapIterationFailed")
                    || (h.kind == "ParallelStateStarted" && b.kind.ends_with("StateAborted")) =>
            {
                prev[j]
            }
            Some((_, b)) => b.id,
        };
        prev.push(p);
    }
    prev
}

/// An execution's history rows as GetExecutionHistory's `events`, oldest first (also
/// what `shoal run --json --history` prints).
pub fn history_events(rows: &[HistoryRow], include_data: bool) -> Vec<Value> {
    rows.iter()
        .zip(previous_event_ids(rows))
        .map(|(h, prev)| history_event(h, prev, include_data))
        .collect()
}

fn history_event(h: &HistoryRow, previous: u64, include_data: bool) -> Value {
    let kind = h.kind.as_str();
    let key = if kind.ends_with("StateEntered") {
        "stateEnteredEventDetails".to_string()
    } else if kind.ends_with("StateExited") {
        "stateExitedEventDetails".to_string()
    } else {
        let mut c = kind.chars();
        let first = c.next().map(|f| f.to_ascii_lowercase()).unwrap_or_default();
        format!("{first}{}EventDetails", c.as_str())
    };
    let mut details: Value = serde_json::from_str(&h.details).unwrap_or_else(|_| json!({}));
    if let Some(d) = details.as_object_mut() {
        // AWS leaves out what is not there rather than sending null.
        d.retain(|_, v| !v.is_null());
        if d.contains_key("assignedVariables") {
            d.insert(
                "assignedVariablesDetails".into(),
                json!({"truncated": false}),
            );
        }
        for k in ["input", "output"] {
            if d.contains_key(k) {
                if !include_data {
                    d.remove(k);
                }
                d.insert(format!("{k}Details"), json!({"truncated": false}));
            }
        }
    }
    let mut e = json!({
        "timestamp": secs(h.at_ms), "type": kind, "id": h.id,
        "previousEventId": previous,
    });
    // An execution's failure keeps its details object even when it has no error or cause.
    let keep_empty = matches!(kind, "ExecutionFailed" | "ExecutionTimedOut");
    if details
        .as_object()
        .is_some_and(|d| keep_empty || !d.is_empty())
    {
        e[key] = details;
    }
    e
}

fn list_item(e: &ExecutionRecord, origin: &ExecutionOrigin) -> Value {
    let mut v = json!({
        "executionArn": e.arn, "stateMachineArn": e.state_machine_arn, "name": e.name,
        "status": e.status.as_str(), "startDate": secs(e.start_ms), "redriveCount": e.redrive_count,
    });
    origin_fields(origin, &mut v);
    if let Some(t) = e.stop_ms {
        v["stopDate"] = secs(t);
    }
    v
}

impl Server {
    pub(crate) async fn call(self: &Arc<Self>, op: &str, p: &Value) -> R {
        match op {
            "CreateStateMachine" => self.blocking(p, |s, p| s.create_state_machine(p)).await,
            "UpdateStateMachine" => self.blocking(p, |s, p| s.update_state_machine(p)).await,
            "DescribeStateMachine" => self.blocking(p, |s, p| s.describe_state_machine(p)).await,
            "ListStateMachines" => self.blocking(p, |s, p| s.list_state_machines(p)).await,
            "DeleteStateMachine" => self.blocking(p, |s, p| s.delete_state_machine(p)).await,
            "DescribeStateMachineForExecution" => {
                self.blocking(p, |s, p| s.describe_state_machine_for_execution(p))
                    .await
            }
            "PublishStateMachineVersion" => {
                self.blocking(p, |s, p| s.publish_state_machine_version(p))
                    .await
            }
            "ListStateMachineVersions" => {
                self.blocking(p, |s, p| s.list_state_machine_versions(p))
                    .await
            }
            "DeleteStateMachineVersion" => {
                self.blocking(p, |s, p| s.delete_state_machine_version(p))
                    .await
            }
            "CreateStateMachineAlias" => {
                self.blocking(p, |s, p| s.create_state_machine_alias(p))
                    .await
            }
            "DescribeStateMachineAlias" => {
                self.blocking(p, |s, p| s.describe_state_machine_alias(p))
                    .await
            }
            "UpdateStateMachineAlias" => {
                self.blocking(p, |s, p| s.update_state_machine_alias(p))
                    .await
            }
            "DeleteStateMachineAlias" => {
                self.blocking(p, |s, p| s.delete_state_machine_alias(p))
                    .await
            }
            "ListStateMachineAliases" => {
                self.blocking(p, |s, p| s.list_state_machine_aliases(p))
                    .await
            }
            "TagResource" => self.blocking(p, |s, p| s.tag_resource(p)).await,
            "UntagResource" => self.blocking(p, |s, p| s.untag_resource(p)).await,
            "ListTagsForResource" => self.blocking(p, |s, p| s.list_tags_for_resource(p)).await,
            "StartExecution" => self.start_execution(p, false).await,
            "StartSyncExecution" => self.start_execution(p, true).await,
            "StopExecution" => self.stop_execution(p).await,
            "DescribeExecution" => self.blocking(p, |s, p| s.describe_execution(p)).await,
            "ListExecutions" => self.blocking(p, |s, p| s.list_executions(p)).await,
            "GetExecutionHistory" => self.blocking(p, |s, p| s.history(p)).await,
            "DescribeMapRun" => self.blocking(p, |s, p| s.describe_map_run(p)).await,
            "ListMapRuns" => self.blocking(p, |s, p| s.list_map_runs(p)).await,
            "UpdateMapRun" => self.blocking(p, |s, p| s.update_map_run(p)).await,
            "RedriveExecution" => self.blocking(p, |s, p| s.redrive(p)).await,
            "ValidateStateMachineDefinition" => {
                let def = req_str(p, "definition")?;
                if def.len() > MAX_DEFINITION {
                    return Err(validation(
                        "definition",
                        "Member must have length less than or equal to 1048576",
                    ));
                }
                let mut parsed = shoal_asl::parse(def);
                if opt_str(p, "type")? == Some("EXPRESS") {
                    parsed.diagnostics.extend(express_diagnostics(def));
                }
                Ok(parsed.validation_report())
            }
            "TestState" => self.test_state(p).await,
            "ListMapRunFailures" => self.blocking(p, |s, p| s.list_failures(p)).await,
            "DescribeItemReader" => self.describe_item_reader(p),
            "ListWorkers" => self.list_workers().await,
            "SendTaskSuccess" => self.send_task_success(p).await,
            "SendTaskFailure" => self.send_task_failure(p).await,
            "SendTaskHeartbeat" => self.send_task_heartbeat(p).await,
            "ListWaitingTasks" => self.blocking(p, |s, p| s.list_waiting_tasks(p)).await,
            "CreateActivity" => self.blocking(p, |s, p| s.create_activity(p)).await,
            "DescribeActivity" => self.blocking(p, |s, p| s.describe_activity(p)).await,
            "DeleteActivity" => self.blocking(p, |s, p| s.delete_activity(p)).await,
            "ListActivities" => self.blocking(p, |s, p| s.list_activities(p)).await,
            "GetActivityTask" => self.get_activity_task(p).await,
            _ => Err(ApiError::new(
                "UnknownOperationException",
                format!("unknown operation {op}"),
            )),
        }
    }

    /// A handler that calls the store synchronously, run on the blocking pool so that a
    /// slow store never stalls the server's or the executions' async threads.
    async fn blocking<F>(self: &Arc<Self>, p: &Value, f: F) -> R
    where
        F: FnOnce(&Arc<Server>, &Value) -> R + Send + 'static,
    {
        let (server, p) = (self.clone(), p.clone());
        match tokio::task::spawn_blocking(move || f(&server, &p)).await {
            Ok(r) => r,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => Err(ApiError {
                    status: 500,
                    code: "InternalFailure",
                    message: e.to_string(),
                }),
            },
        }
    }

    /// The request's definition with its substitutions made, refused with AWS's
    /// message when it is not valid for a machine of this type.
    pub(crate) fn definition(p: &Value, express: bool) -> R<String> {
        let def = req_str(p, "definition")?;
        if def.len() > MAX_DEFINITION {
            return Err(validation(
                "definition",
                "Member must have length less than or equal to 1048576",
            ));
        }
        let subs: Vec<(&str, &str)> = match p.get("definitionSubstitutions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    v.as_str().map(|v| (k.as_str(), v)).ok_or_else(|| {
                        ApiError::new(
                            "SerializationException",
                            "definitionSubstitutions values must be strings",
                        )
                    })
                })
                .collect::<R<_>>()?,
            Some(_) => {
                return Err(ApiError::new(
                    "SerializationException",
                    "definitionSubstitutions must be an object",
                ))
            }
        };
        let text = shoal_asl::substitute(def, subs);
        let mut parsed = shoal_asl::parse(&text);
        if express {
            parsed.diagnostics.extend(express_diagnostics(&text));
        }
        if !parsed.is_valid() {
            // AWS: 'CODE: message at /pointer', one per problem.
            let problems: Vec<String> = parsed
                .diagnostics
                .iter()
                .map(|d| {
                    let at = if d.pointer.is_empty() {
                        "/"
                    } else {
                        &d.pointer
                    };
                    format!("{}: {} at {at}", d.code, d.message)
                })
                .collect();
            return Err(ApiError::new(
                "InvalidDefinition",
                format!(
                    "Invalid State Machine Definition: '{}'",
                    problems.join(", ")
                ),
            ));
        }
        Ok(text)
    }

    /// The mocks of `<arn>#<TestCase>`, as Step Functions Local selects a test case.
    fn mock_scope(&self, machine: &str, case: Option<&str>) -> R<shoal_runtime::Scope> {
        let Some(case) = case else {
            return Ok(shoal_runtime::Scope::default());
        };
        let Some(file) = &self.mocks else {
            return Err(ApiError::new(
                "InvalidArn",
                format!("Invalid Arn: test case '{case}' asked for, but shoal serve has no mock file (--mock-config or SFN_MOCK_CONFIG)"),
            ));
        };
        let config = file
            .current()
            .map_err(|e| ApiError::new("ValidationException", e.to_string()))?;
        let mocks = config.test_case(machine, case).map_err(|e| {
            ApiError::new(
                "ValidationException",
                format!("{}: {e}", file.path().display()),
            )
        })?;
        Ok(shoal_runtime::Scope {
            mocks: Some(Arc::new(shoal_tasks::mock::MockSession::new(mocks))),
            virtual_time: false,
        })
    }

    async fn start_execution(self: &Arc<Self>, p: &Value, sync: bool) -> R {
        let (arn, case) = shoal_tasks::mock::split_test_case(req_str(p, "stateMachineArn")?);
        let (m, run, origin) = self.resolve_for_start(arn)?;
        let scope = self.mock_scope(&m.name, case)?;
        if sync && m.kind != "EXPRESS" {
            return Err(ApiError::new(
                "StateMachineTypeNotSupported",
                "This operation is not supported by this type of state machine",
            ));
        }
        let input_text = opt_str(p, "input")?.unwrap_or("{}");
        if input_text.len() > MAX_INPUT {
            return Err(validation(
                "input",
                "Member must have length less than or equal to 262144",
            ));
        }
        let input: Value = serde_json::from_str(input_text).map_err(|e| {
            ApiError::new(
                "InvalidExecutionInput",
                format!("Invalid State Machine Execution Input: '{e}'"),
            )
        })?;
        let entropy = self.runtime.entropy();
        let name = match opt_str(p, "name")? {
            Some(n) => n.to_string(),
            None => shoal_expr::uuid_v4(&entropy),
        };
        check_name(&name)?;
        let parsed = shoal_asl::parse(&run.definition);
        let Some(machine) = parsed.machine.filter(|_| parsed.diagnostics.is_empty()) else {
            return Err(ApiError::new(
                "InvalidDefinition",
                "the stored definition no longer parses",
            ));
        };
        let mut info = ExecutionInfo::local(
            &m.name,
            &name,
            self.runtime.now_ms(),
            m.kind == "EXPRESS",
            &entropy,
        );
        info.role_arn = run.role_arn.clone();
        let arn = info.execution_arn.clone();
        let start_ms = info.start_time_ms;
        let begun = match self
            .runtime
            .begin_blocking(Arc::new(machine), run.definition.clone(), info, input)
            .await
        {
            Ok(b) => b,
            Err(shoal_runtime::Error::Store(shoal_store::Error::ExecutionAlreadyExists(_))) => {
                // Idempotent: the same name and input while it runs is the same execution.
                let old = self.db.execution(&arn)?;
                let same = serde_json::from_str::<Value>(&old.input).ok()
                    == serde_json::from_str::<Value>(input_text).ok();
                if same && old.status == ExecutionStatus::Running && !sync {
                    return Ok(json!({"executionArn": old.arn, "startDate": secs(old.start_ms)}));
                }
                return Err(ApiError::new(
                    "ExecutionAlreadyExists",
                    format!("Execution Already Exists: '{arn}'"),
                ));
            }
            Err(shoal_runtime::Error::Store(e)) => return Err(e.into()),
            Err(e) => {
                return Err(ApiError {
                    status: 500,
                    code: "InternalFailure",
                    message: e.to_string(),
                })
            }
        };
        if origin != ExecutionOrigin::default() {
            self.db.set_execution_origin(&arn, &origin)?;
        }
        let rt = self.runtime.clone();
        let this = self.clone();
        let key = arn.clone();
        let task = tokio::spawn(async move {
            let r = rt.run_begun(begun.with_scope(scope)).await;
            this.finished(&key);
            r
        });
        self.track(arn.clone(), task.abort_handle());
        if !sync {
            return Ok(json!({"executionArn": arn, "startDate": secs(start_ms)}));
        }
        let outcome = task.await;
        let e = self.db.execution(&arn)?;
        let mut v = json!({
            "executionArn": e.arn, "stateMachineArn": e.state_machine_arn, "name": e.name,
            "startDate": secs(e.start_ms), "stopDate": secs(e.stop_ms.unwrap_or_else(|| self.runtime.now_ms())),
            "status": e.status.as_str(), "input": e.input, "inputDetails": {"included": true},
        });
        match outcome {
            Ok(Ok(Outcome::Succeeded(out))) => {
                v["output"] = json!(out.to_string());
                v["outputDetails"] = json!({"included": true});
            }
            Ok(Ok(Outcome::Failed(f))) => {
                v["error"] = json!(f.error);
                v["cause"] = json!(f.cause.unwrap_or_default());
            }
            _ => v["status"] = json!("FAILED"),
        }
        Ok(v)
    }

    async fn stop_execution(&self, p: &Value) -> R {
        let arn = check_arn(req_str(p, "executionArn")?, "execution")?;
        let e = self.db.execution(arn)?;
        if e.arn != arn {
            return Err(shoal_store::Error::ExecutionDoesNotExist(arn.into()).into());
        }
        let handle = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(arn);
        if let Some(h) = handle {
            h.abort();
            // Wait until the task is gone, so nothing it queued lands after the abort.
            while !h.is_finished() {
                tokio::task::yield_now().await;
            }
        }
        let now = self.runtime.now_ms();
        self.db
            .abort_execution(arn, now, opt_str(p, "error")?, opt_str(p, "cause")?)?;
        Ok(json!({"stopDate": secs(now)}))
    }

    pub(crate) fn execution(&self, p: &Value) -> R<ExecutionRecord> {
        let arn = check_arn(req_str(p, "executionArn")?, "execution")?;
        let e = self.db.execution(arn)?;
        if e.arn != arn {
            return Err(shoal_store::Error::ExecutionDoesNotExist(arn.into()).into());
        }
        Ok(e)
    }

    fn describe_execution(&self, p: &Value) -> R {
        let e = match self.execution(p) {
            Ok(e) => e,
            Err(not_found) => {
                return match self.db.child_execution(req_str(p, "executionArn")?)? {
                    Some(c) => Ok(describe_child(&c)),
                    None => Err(not_found),
                }
            }
        };
        let mut v = describe_execution(&e);
        origin_fields(&self.db.execution_origin(&e.arn)?, &mut v);
        Ok(v)
    }

    fn list_executions(&self, p: &Value) -> R {
        let status = opt_str(p, "statusFilter")?;
        if let Some(s) = status {
            if !matches!(
                s,
                "RUNNING" | "SUCCEEDED" | "FAILED" | "TIMED_OUT" | "ABORTED" | "PENDING_REDRIVE"
            ) {
                return Err(validation("statusFilter", "Member must satisfy enum value set: [RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE]"));
            }
        }
        let machine = opt_str(p, "stateMachineArn")?;
        if let Some(m) = machine {
            self.machine_record(m)?;
        }
        // A map run's STANDARD children are recorded as they end; EXPRESS children
        // leave no execution behind, as on AWS.
        if let Some(mr) = opt_str(p, "mapRunArn")? {
            check_arn(mr, "mapRun")?;
            if self.db.map_run(mr)?.is_none() {
                return Err(ApiError::new(
                    "ResourceNotFound",
                    format!("Map Run Does Not Exist: '{mr}'"),
                ));
            }
            let children: Vec<ChildExecution> = self
                .db
                .children(mr)?
                .into_iter()
                .filter(|c| status.is_none_or(|s| c.status.as_str() == s))
                .collect();
            let (items, next) = page(children, p, 100)?;
            let mut v =
                json!({"executions": items.iter().map(child_list_item).collect::<Vec<_>>()});
            if let Some(n) = next {
                v["nextToken"] = json!(n);
            }
            return Ok(v);
        }
        let all: Vec<(ExecutionRecord, ExecutionOrigin)> = self
            .db
            .executions()?
            .into_iter()
            .filter(|e| status.is_none_or(|s| e.status.as_str() == s))
            .map(|e| {
                let origin = self.db.execution_origin(&e.arn)?;
                Ok((e, origin))
            })
            .collect::<R<Vec<_>>>()?
            .into_iter()
            .filter(|(e, o)| {
                machine.is_none_or(|m| {
                    e.state_machine_arn == m
                        || o.version_arn.as_deref() == Some(m)
                        || o.alias_arn.as_deref() == Some(m)
                })
            })
            .collect();
        let (items, next) = page(all, p, 100)?;
        let mut v =
            json!({"executions": items.iter().map(|(e, o)| list_item(e, o)).collect::<Vec<_>>()});
        if let Some(n) = next {
            v["nextToken"] = json!(n);
        }
        Ok(v)
    }

    fn history(&self, p: &Value) -> R {
        let e = self.execution(p)?;
        let rows = self.db.history(&e.arn)?;
        let mut all: Vec<(&HistoryRow, u64)> = rows.iter().zip(previous_event_ids(&rows)).collect();
        if opt_bool(p, "reverseOrder")? {
            all.reverse();
        }
        let include = p
            .get("includeExecutionData")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let (items, next) = page(all, p, 100)?;
        let mut v = json!({"events": items.iter().map(|(h, prev)| history_event(h, *prev, include)).collect::<Vec<_>>()});
        if let Some(n) = next {
            v["nextToken"] = json!(n);
        }
        Ok(v)
    }

    fn map_run(&self, p: &Value) -> R<MapRunRecord> {
        let arn = check_arn(req_str(p, "mapRunArn")?, "mapRun")?;
        self.db.map_run(arn)?.ok_or_else(|| {
            ApiError::new(
                "ResourceNotFound",
                format!("Map Run Does Not Exist: '{arn}'"),
            )
        })
    }

    fn describe_map_run(&self, p: &Value) -> R {
        let m = self.map_run(p)?;
        let live = self
            .runtime
            .map_run_progress(&m.arn)
            .map(|l| (l.tally(), l.max_concurrency()));
        Ok(describe_map_run(&m, live))
    }

    fn list_map_runs(&self, p: &Value) -> R {
        let e = self.execution(p)?;
        let runs: Vec<Value> = self
            .db
            .map_runs(&e.arn)?
            .iter()
            .map(|m| {
                let mut v = json!({"executionArn": m.execution, "mapRunArn": m.arn, "stateMachineArn": format!("{}/{}", e.state_machine_arn, m.state), "startDate": secs(m.start_ms)});
                if let Some(t) = m.stop_ms {
                    v["stopDate"] = secs(t);
                }
                v
            })
            .collect();
        Ok(json!({ "mapRuns": runs }))
    }

    fn update_map_run(&self, p: &Value) -> R {
        let m = self.map_run(p)?;
        let u = MapRunUpdate {
            max_concurrency: opt_u64(p, "maxConcurrency")?.map(|v| v as usize),
            tolerated_failure_count: opt_u64(p, "toleratedFailureCount")?.map(|v| v as f64),
            tolerated_failure_percentage: opt_f64(p, "toleratedFailurePercentage")?,
        };
        if u.tolerated_failure_percentage
            .is_some_and(|v| !(0.0..=100.0).contains(&v))
        {
            return Err(validation(
                "toleratedFailurePercentage",
                "Member must have value between 0 and 100",
            ));
        }
        match self.runtime.map_run_progress(&m.arn) {
            Some(live) if m.status == "RUNNING" => {
                live.update(u);
                Ok(json!({}))
            }
            _ => Err(ApiError::new(
                "ValidationException",
                format!("Map Run '{}' is not running", m.arn),
            )),
        }
    }

    fn redrive(self: &Arc<Self>, p: &Value) -> R {
        let e = self.execution(p)?;
        if !e.status.is_redrivable() {
            return Err(ApiError::new(
                "ExecutionNotRedrivable",
                format!(
                    "Execution '{}' is {} and cannot be redriven",
                    e.arn, e.status
                ),
            ));
        }
        self.spawn_resume(e.arn.clone(), true);
        Ok(json!({"redriveDate": secs(self.runtime.now_ms())}))
    }

    /// shoal's own: the fleet's workers as they last announced themselves.
    async fn list_workers(&self) -> R {
        let Some(fleet) = &self.fleet else {
            return Ok(json!({"fleet": false, "workers": []}));
        };
        let workers = fleet
            .workers()
            .await
            .map_err(|e| ApiError::new("ServiceUnavailable", e.to_string()))?;
        Ok(json!({"fleet": true, "workers": workers}))
    }

    /// shoal's own: how far a running map run's ItemReader has got. AWS's
    /// DescribeMapRun has no bytes; its itemCounts.total counts the items read so far.
    /// Kept in memory: after a restart, or for another process's run, `live` is false.
    fn describe_item_reader(&self, p: &Value) -> R {
        let m = self.map_run(p)?;
        let mut v = json!({"mapRunArn": m.arn, "live": false});
        let Some(live) = self.runtime.map_run_progress(&m.arn) else {
            return Ok(v);
        };
        v["live"] = json!(true);
        let Some(r) = live.reader() else {
            v["reader"] = Value::Null;
            return Ok(v);
        };
        let mut reader = json!({"done": r.done});
        if let Some(b) = r.bytes {
            reader["bytesRead"] = json!(b.read);
            reader["bytesTotal"] = json!(b.total);
            reader["bytesTotalKnown"] = json!(b.total_known);
        }
        if let Some(k) = r.keys_listed {
            reader["keysListed"] = json!(k);
        }
        v["reader"] = reader;
        Ok(v)
    }

    fn list_failures(&self, p: &Value) -> R {
        let m = self.map_run(p)?;
        let all = self.db.failures(&m.arn)?;
        let (items, next) = page(all, p, 20)?;
        let list: Vec<Value> = items
            .iter()
            .map(|f| json!({"child": f.child, "items": f.items, "attempt": f.generation, "date": secs(f.at_ms), "error": f.error, "cause": f.cause}))
            .collect();
        let mut v = json!({ "failures": list });
        if let Some(n) = next {
            v["nextToken"] = json!(n);
        }
        Ok(v)
    }
}
