//! TestState: one state run alone, as AWS's TestState API runs it, with its `mock`
//! (a Task's service answer, or a Map's or Parallel's result, given instead of run)
//! and `stateConfiguration` (how far retries and map iterations got).

use crate::api::{opt_bool, opt_str, req_str, validation, R};
use crate::{ApiError, Server};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use shoal_asl::{Kind, Resource, Retrier, StateMachine};
use shoal_engine::maprun::{Source, Tolerance};
use shoal_engine::{Effect, Event, Execution, ExecutionInfo, Failure, MapRunSpec, Outcome};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// The name AWS gives the state in the single-state form (`$$.State.Name`).
const SINGLE_STATE_NAME: &str = "StateName";

/// The most a mock's `result` (and `mapItemReaderData`) may hold.
const MAX_MOCK_CHARS: usize = 262_144;

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

/// What the mocked call answers.
#[derive(Debug, Clone)]
enum MockAnswer {
    Result(Value),
    Error(Failure),
}

/// `mock.fieldValidationMode`: how a Task's mocked result is held to the service's
/// output shape.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FieldValidation {
    Strict,
    Present,
    None,
}

/// TestState's `mock`, read but not yet checked against the state.
#[derive(Debug, Clone)]
struct Mock {
    /// `result` as sent: it is parsed only once the state is known to take a mock.
    result: Option<String>,
    error: Option<Failure>,
    validation: FieldValidation,
}

impl Mock {
    fn parse(p: &Value) -> R<Option<Mock>> {
        let m = match p.get("mock") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(ApiError::new(
                    "SerializationException",
                    "mock must be an object",
                ))
            }
        };
        let mock = Value::Object(m.clone());
        let result = opt_str(&mock, "result")?.map(str::to_string);
        if result.as_ref().is_some_and(|r| r.len() > MAX_MOCK_CHARS) {
            return Err(validation(
                "mock.result",
                "Member must have length less than or equal to 262144",
            ));
        }
        let error = match mock.get("errorOutput") {
            None | Some(Value::Null) => None,
            Some(e @ Value::Object(_)) => Some(Failure {
                error: opt_str(e, "error")?.unwrap_or_default().to_string(),
                cause: opt_str(e, "cause")?.map(str::to_string),
            }),
            Some(_) => {
                return Err(ApiError::new(
                    "SerializationException",
                    "mock.errorOutput must be an object",
                ))
            }
        };
        let validation = match opt_str(&mock, "fieldValidationMode")? {
            None | Some("STRICT") => FieldValidation::Strict,
            Some("PRESENT") => FieldValidation::Present,
            Some("NONE") => FieldValidation::None,
            Some(other) => return Err(ApiError::new(
                "ValidationException",
                format!("1 validation error detected: Value '{other}' at 'mock.fieldValidationMode' failed to satisfy constraint: Member must satisfy enum value set: [STRICT, PRESENT, NONE]"),
            )),
        };
        Ok(Some(Mock {
            result,
            error,
            validation,
        }))
    }
}

/// `stateConfiguration`.
#[derive(Debug, Clone, Default)]
struct StateConfiguration {
    /// Retries the matching retrier has already made.
    retrier_retry_count: u32,
    /// The nested state a mocked Map or Parallel error comes from. Nothing nested
    /// runs, so it only has to name a state there.
    error_caused_by_state: Option<String>,
    /// Map iterations that failed, judged against the tolerated failure threshold.
    map_iteration_failure_count: Option<u64>,
    /// What the ItemReader would have read: it counts the items for
    /// ToleratedFailurePercentage.
    map_item_reader_data: Option<Value>,
}

impl StateConfiguration {
    fn parse(p: &Value) -> R<StateConfiguration> {
        let c = match p.get("stateConfiguration") {
            None | Some(Value::Null) => return Ok(StateConfiguration::default()),
            Some(c @ Value::Object(_)) => c,
            Some(_) => {
                return Err(ApiError::new(
                    "SerializationException",
                    "stateConfiguration must be an object",
                ))
            }
        };
        let count = |k: &str| -> R<Option<u64>> {
            match c.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => match (v.as_u64(), v.as_i64()) {
                    (Some(n), _) => Ok(Some(n)),
                    (None, Some(n)) => Err(ApiError::new(
                        "ValidationException",
                        format!("1 validation error detected: Value '{n}' at 'stateConfiguration.{k}' failed to satisfy constraint: Member must have value greater than or equal to 0"),
                    )),
                    _ => Err(ApiError::new(
                        "SerializationException",
                        format!("stateConfiguration.{k} must be an integer"),
                    )),
                },
            }
        };
        let reader_data = match opt_str(c, "mapItemReaderData")? {
            None => None,
            Some(t) if t.len() > MAX_MOCK_CHARS => {
                return Err(validation(
                    "stateConfiguration.mapItemReaderData",
                    "Member must have length less than or equal to 262144",
                ))
            }
            // Data in a format other than JSON (CSV, JSONL) counts no items here.
            Some(t) => Some(serde_json::from_str(t).unwrap_or(Value::String(t.to_string()))),
        };
        Ok(StateConfiguration {
            retrier_retry_count: count("retrierRetryCount")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
                .unwrap_or(0),
            error_caused_by_state: opt_str(c, "errorCausedByState")?.map(str::to_string),
            map_iteration_failure_count: count("mapIterationFailureCount")?,
            map_item_reader_data: reader_data,
        })
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

/// The arrays and objects the request sent as JSON text (the input, the context,
/// the mock's result), each with its text. AWS hands such a value back in the text
/// it came in when it passes through unchanged (`[1, 1, 1]` stays spaced).
#[derive(Default)]
struct SentTexts(Vec<(Value, String)>);

/// Enough for any request TestState takes whole; beyond it values are written anew.
const MAX_SENT_NODES: usize = 10_000;

impl SentTexts {
    fn add(&mut self, text: &str) {
        if self.0.len() >= MAX_SENT_NODES {
            return;
        }
        let Ok(raw) = serde_json::from_str::<&RawValue>(text) else {
            return;
        };
        let text = raw.get();
        let children: Vec<&RawValue> = match text.as_bytes().first() {
            Some(b'[') => serde_json::from_str(text).unwrap_or_default(),
            Some(b'{') => serde_json::from_str::<BTreeMap<String, &RawValue>>(text)
                .map(|m| m.into_values().collect())
                .unwrap_or_default(),
            _ => return,
        };
        if let Ok(v) = serde_json::from_str::<Value>(text) {
            self.0.push((v, text.to_string()));
        }
        for c in children {
            self.add(c.get());
        }
    }

    fn render(&self, v: &Value) -> String {
        self.0
            .iter()
            .find(|(sent, _)| sent == v)
            .map_or_else(|| v.to_string(), |(_, text)| text.clone())
    }
}

/// `inspectionData` as the API sends it: data as JSON text, counts as numbers.
fn inspection_json(m: Map<String, Value>, texts: &SentTexts) -> Value {
    let out: Map<String, Value> = m
        .into_iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "maxConcurrency"
                | "toleratedFailureCount"
                | "toleratedFailurePercentage"
                | "errorDetails" => v,
                _ => Value::String(texts.render(&v)),
            };
            (k, v)
        })
        .collect();
    Value::Object(out)
}

/// The mini machine TestState runs: the state, and a Succeed stand-in for every
/// state it may go to, so the state the execution enters next is `nextState`.
fn machine_json(name: &str, state: &Value) -> Value {
    let mut targets: Vec<String> = Vec::new();
    collect_targets(state, &mut targets);
    let mut states = Map::new();
    for t in targets.iter().filter(|t| *t != name) {
        states.insert(t.clone(), json!({"Type": "Succeed"}));
    }
    states.insert(name.to_string(), state.clone());
    json!({"StartAt": name, "States": states})
}

fn parse_machine(def: &Value) -> R<StateMachine> {
    let parsed = shoal_asl::parse(&def.to_string());
    match parsed.machine.filter(|_| parsed.diagnostics.is_empty()) {
        Some(m) => Ok(m),
        None => {
            let problems: Vec<String> = parsed
                .diagnostics
                .iter()
                .map(|d| format!("{}: {} at {}", d.code, d.message, d.pointer))
                .collect();
            Err(ApiError::new(
                "InvalidDefinition",
                format!(
                    "Invalid State Machine Definition: '{}'",
                    problems.join(", ")
                ),
            ))
        }
    }
}

/// The botocore service and operation whose output a Task's mocked result must fit;
/// `None` where Step Functions shapes the answer itself (a function ARN, HTTP,
/// activities, API Gateway).
fn mocked_operation(resource: &Resource) -> Option<(String, String)> {
    match resource {
        Resource::LambdaInvoke { .. } => Some(("lambda".into(), "invoke".into())),
        Resource::AwsSdk {
            service, action, ..
        } => Some((service.clone(), action.clone())),
        Resource::Service {
            service, action, ..
        } => {
            let key = match service.as_str() {
                "apigateway" => return None,
                "events" => "eventbridge",
                "states" => "sfn",
                "bedrock" => "bedrockruntime",
                "elasticmapreduce" => "emr",
                s => s,
            };
            Some((key.to_string(), action.clone()))
        }
        Resource::LambdaFunction { .. } | Resource::Http { .. } | Resource::Activity { .. } => None,
    }
}

/// Checks a mock against the state it stands in for and returns what the mocked
/// call answers, with AWS's messages.
fn mock_answer(mock: &Mock, kind: &Kind) -> R<MockAnswer> {
    let invalid = |m: &str| ApiError::new("ValidationException", m);
    let raw =
        match (&mock.result, &mock.error) {
            (Some(_), Some(_)) | (None, None) => return Err(invalid(
                "A test mock should have only one of the following fields: [result, errorOutput].",
            )),
            (None, Some(f)) => return Ok(MockAnswer::Error(f.clone())),
            (Some(r), None) => r,
        };
    let result: Value =
        serde_json::from_str(raw).map_err(|_| invalid("Mocked result must be valid JSON"))?;
    match kind {
        Kind::Map(m) if m.result_writer.is_some() && !result.is_object() => {
            return Err(invalid("Mocked result must be a JSON object."));
        }
        Kind::Map(m) if m.result_writer.is_none() && !result.is_array() => {
            return Err(invalid("Mocked result must be an array."));
        }
        Kind::Parallel { branches, .. } => match result.as_array() {
            None => return Err(invalid("Mocked result must be an array.")),
            Some(a) if a.len() != branches.len() => {
                return Err(invalid(
                    "Mocked result must contain the same number of items as number of Parallel branches.",
                ))
            }
            Some(_) => {}
        },
        Kind::Task { resource, .. } => {
            let mode = match mock.validation {
                FieldValidation::Strict => Some(shoal_aws::check::Mode::Strict),
                FieldValidation::Present => Some(shoal_aws::check::Mode::Present),
                FieldValidation::None => None,
            };
            if let (Some(mode), Some((service, action))) = (mode, mocked_operation(resource)) {
                // A service or operation the models lack has nothing to hold it to.
                if let Ok(violations) =
                    shoal_aws::check_output(&service, &action, &result, mode)
                {
                    if let Some(v) = violations.first() {
                        return Err(invalid(&format!(
                            "Mock result schema validation error: {v}"
                        )));
                    }
                }
            }
        }
        _ => {}
    }
    Ok(MockAnswer::Result(result))
}

/// A mocked Parallel runs as a Task: the same fields around one call, which the
/// mock answers. An inline Map runs as a distributed one, so that its result comes
/// from one map run, which the mock answers.
fn stand_in_for_mock(state: &mut Map<String, Value>) {
    match state.get("Type").and_then(Value::as_str) {
        Some("Parallel") => {
            state.remove("Branches");
            state.insert("Type".into(), json!("Task"));
            state.insert(
                "Resource".into(),
                json!(format!(
                    "arn:{}:states:{}:{}:activity:TestStateMock",
                    shoal_asl::identity::PARTITION,
                    shoal_asl::identity::REGION,
                    shoal_asl::identity::ACCOUNT
                )),
            );
        }
        Some("Map") => {
            if let Some(it) = state.remove("Iterator") {
                state.insert("ItemProcessor".into(), it);
            }
            let inline = state
                .get("ItemProcessor")
                .and_then(|p| p.get("ProcessorConfig"))
                .and_then(|c| c.get("Mode"))
                .and_then(Value::as_str)
                != Some("DISTRIBUTED");
            if inline {
                if let Some(p) = state
                    .get_mut("ItemProcessor")
                    .and_then(Value::as_object_mut)
                {
                    p.insert(
                        "ProcessorConfig".into(),
                        json!({"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}),
                    );
                }
                if let Some(params) = state.remove("Parameters") {
                    state.insert("ItemSelector".into(), params);
                }
            }
        }
        _ => {}
    }
}

/// How many items a map run would have had, for ToleratedFailurePercentage.
fn item_count(spec: &MapRunSpec, config: &StateConfiguration, result: &Value) -> u64 {
    let n = match (&spec.source, &config.map_item_reader_data) {
        (Source::Items(items), _) => items.len(),
        (_, Some(Value::Array(items))) => items.len(),
        _ => result.as_array().map_or(0, Vec::len),
    };
    n as u64
}

/// What a mocked map run ends with: the mock, unless the failed iterations
/// (`mapIterationFailureCount`) break a tolerated failure threshold the Map sets.
fn mocked_map_run(
    spec: &MapRunSpec,
    answer: &MockAnswer,
    config: &StateConfiguration,
) -> Result<Value, Failure> {
    let result = match answer {
        MockAnswer::Error(f) => return Err(f.clone()),
        MockAnswer::Result(v) => v,
    };
    let t = &spec.tolerance;
    // Without ToleratedFailure* AWS's TestState lets failed iterations pass.
    if let Some(failed) = config.map_iteration_failure_count {
        if (t.count.is_some() || t.percentage.is_some())
            && t.exceeded(failed, Some(item_count(spec, config, result)))
        {
            return Err(Tolerance::threshold_failure());
        }
    }
    Ok(result.clone())
}

/// Runs `exec` with every call and map run answered by the mock, and returns how it
/// ended with the last failure the mock handed it. Nothing waits: a timer fires only
/// when nothing else is left to do.
fn drive_mocked(
    exec: &mut Execution,
    answer: &MockAnswer,
    config: &StateConfiguration,
    now_ms: i64,
) -> (Outcome, Option<Failure>) {
    let mut handed: Option<Failure> = None;
    let mut queue = VecDeque::from([Event::Start]);
    let mut timers: Vec<(i64, u64)> = Vec::new();
    loop {
        let event = match queue.pop_front() {
            Some(e) => e,
            None => {
                timers.sort_unstable();
                if timers.is_empty() {
                    let stopped = Failure::runtime("the test state stopped");
                    return (Outcome::Failed(stopped), handed);
                }
                let (_, id) = timers.remove(0);
                Event::TimerFired { id }
            }
        };
        let effects = match exec.handle(event, now_ms) {
            Ok(e) => e,
            Err(e) => return (Outcome::Failed(Failure::runtime(e.to_string())), handed),
        };
        for effect in effects {
            match effect {
                Effect::Invoke { id, .. } => queue.push_back(match answer {
                    MockAnswer::Result(v) => Event::TaskSucceeded {
                        id,
                        output: v.clone(),
                    },
                    MockAnswer::Error(f) => {
                        handed = Some(f.clone());
                        Event::TaskFailed {
                            id,
                            failure: f.clone(),
                        }
                    }
                }),
                Effect::StartMapRun { id, spec, .. } => {
                    let result = mocked_map_run(&spec, answer, config);
                    if let Err(f) = &result {
                        handed = Some(f.clone());
                    }
                    queue.push_back(Event::MapRunFinished { id, result })
                }
                Effect::Timer { id, fire_at_ms } => timers.push((fire_at_ms, id)),
                Effect::Complete(o) => return (o, handed),
            }
        }
    }
}

/// What the state's retriers say about an error, given the retries already made.
enum RetryVerdict {
    /// The retrier at `index` would retry after `backoff_seconds`.
    Retry { index: usize, backoff_seconds: i64 },
    /// The retrier at `index` matches but has no attempts left.
    Exhausted { index: usize },
}

fn retry_verdict(retriers: &[Retrier], error: &str, retried: u32) -> Option<RetryVerdict> {
    let (index, r) = retriers
        .iter()
        .enumerate()
        .find(|(_, r)| shoal_asl::error_matches(&r.error_equals, error))?;
    if retried >= r.max_attempts {
        return Some(RetryVerdict::Exhausted { index });
    }
    // JitterStrategy FULL would pick at random below this; TestState reports the bound.
    let ms = shoal_engine::retry_delay_ms(r, retried, 1.0);
    Some(RetryVerdict::Retry {
        index,
        backoff_seconds: (ms as f64 / 1000.0).round() as i64,
    })
}

/// What AWS's inspectionData shows for a mocked Parallel: no call happens, so
/// nothing about one.
const PARALLEL_INSPECTION: [&str; 5] = [
    "input",
    "afterResultSelector",
    "afterResultPath",
    "variables",
    "errorDetails",
];

impl Server {
    pub(crate) async fn test_state(&self, p: &Value) -> R {
        let def_text = req_str(p, "definition")?;
        let level = InspectionLevel::parse(p)?;
        let mock = Mock::parse(p)?;
        let config = StateConfiguration::parse(p)?;
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
                // AWS runs the state as `StateName` whatever it is called
                // (`$$.State.Name`), unless it may go to a state of that name.
                let mut targets = Vec::new();
                collect_targets(&state, &mut targets);
                let run_as = if targets.iter().any(|t| t == SINGLE_STATE_NAME) {
                    name
                } else {
                    SINGLE_STATE_NAME
                };
                (run_as.to_string(), state)
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
        obj.remove("Comment");
        // Parsed with its Retry, for the retriers; run without, since TestState
        // reports a retriable error instead of retrying.
        let typed = parse_machine(&machine_json(&name, &Value::Object(obj.clone())))?;
        let kind = &typed.states[&name].kind;
        let retriers: Vec<Retrier> = kind.handling().map(|h| h.retry.clone()).unwrap_or_default();

        if mock.is_none() && config.map_iteration_failure_count.is_some() {
            return Err(ApiError::new(
                "ValidationException",
                "TestState does not support MapIterationFailureCount when a mock is not specified.",
            ));
        }
        let answer = match &mock {
            None => {
                if matches!(kind, Kind::Map(_) | Kind::Parallel { .. }) {
                    return Err(ApiError::new(
                        "InvalidDefinition",
                        "TestState API does not support Map or Parallel states. Supported state types include: [Task, Wait, Pass, Succeed, Fail, Choice]",
                    ));
                }
                if matches!(kind, Kind::Task { .. }) && opt_str(p, "roleArn")?.is_none() {
                    return Err(ApiError::new(
                        "ValidationException",
                        "RoleArn must be specified when testing a Task state",
                    ));
                }
                None
            }
            Some(mock) => {
                if matches!(kind, Kind::Pass { .. } | Kind::Fail { .. } | Kind::Succeed) {
                    return Err(ApiError::new(
                        "ValidationException",
                        format!(
                            "State type '{}' is not supported when a mock is specified",
                            kind.type_name()
                        ),
                    ));
                }
                if opt_bool(p, "revealSecrets")? {
                    return Err(ApiError::new(
                        "ValidationException",
                        "TestState does not support RevealSecrets when a mock is specified.",
                    ));
                }
                if let Some(inner) = &config.error_caused_by_state {
                    let nested = ["ItemProcessor", "Iterator"]
                        .iter()
                        .filter_map(|k| obj.get(*k))
                        .chain(
                            obj.get("Branches")
                                .and_then(Value::as_array)
                                .into_iter()
                                .flatten(),
                        )
                        .any(|m| find_state(m, inner).is_some());
                    if !nested {
                        return Err(ApiError::new(
                            "ValidationException",
                            format!("State '{inner}' does not exist in the definition"),
                        ));
                    }
                }
                Some(mock_answer(mock, kind)?)
            }
        };
        // Only a Task, a Map or a Parallel has something to mock.
        let mocked = matches!(
            kind,
            Kind::Task { .. } | Kind::Map(_) | Kind::Parallel { .. }
        );
        let answer = answer.filter(|_| mocked);
        let parallel = matches!(kind, Kind::Parallel { .. });
        let ends = obj.get("End") == Some(&Value::Bool(true))
            || matches!(kind, Kind::Succeed | Kind::Fail { .. });

        obj.remove("Retry");
        if answer.is_some() {
            stand_in_for_mock(obj);
        }
        let machine = parse_machine(&machine_json(&name, &Value::Object(obj.clone())))?;
        let input_text = opt_str(p, "input")?.unwrap_or("{}");
        let input: Value = serde_json::from_str(input_text)
            .map_err(|e| ApiError::new("InvalidExecutionInput", format!("Invalid input: '{e}'")))?;
        let mut texts = SentTexts::default();
        texts.add(input_text);
        if let (
            Some(MockAnswer::Result(_)),
            Some(Mock {
                result: Some(t), ..
            }),
        ) = (&answer, &mock)
        {
            texts.add(t);
        }
        if let Some(t) = opt_str(p, "context")? {
            texts.add(t);
        }
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
        let role = opt_str(p, "roleArn")?;
        if let Some(role) = role {
            info.role_arn = role.to_string();
        }
        let mut exec = Execution::new(Arc::new(machine), info, input, Box::new(entropy));
        if role.is_none() {
            exec.without_role();
        }
        exec.not_redrivable();
        if level != InspectionLevel::Info {
            exec.inspect();
        }
        if let Some(vars) = object_field(p, "variables")? {
            exec.set_variables(vars);
        }
        if let Some(ctx) = object_field(p, "context")? {
            exec.set_context(ctx);
        }
        let (outcome, handed) = match &answer {
            Some(a) => drive_mocked(&mut exec, a, &config, self.runtime.now_ms()),
            None => (self.runtime.drive(&mut exec).await, None),
        };
        let history = exec.history();
        let next = history
            .iter()
            .filter(|h| h.kind.ends_with("StateEntered"))
            .filter_map(|h| h.details.get("name").and_then(Value::as_str))
            .find(|n| *n != name)
            .map(str::to_string);
        // A failure the state caught: the one the mock handed it, else the last
        // failure event before the stand-in.
        let caught = next.as_ref().and_then(|_| {
            handed.clone().or_else(|| {
                history
                    .iter()
                    .rev()
                    .find(|h| h.kind.ends_with("Failed") && h.details.get("error").is_some())
                    .map(|h| Failure {
                        error: h.details["error"].as_str().unwrap_or_default().to_string(),
                        cause: h
                            .details
                            .get("cause")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    })
            })
        });
        let failure = match &outcome {
            Outcome::Failed(f) => Some(f.clone()),
            Outcome::Succeeded(_) => caught.clone(),
        };
        let verdict = failure
            .as_ref()
            .and_then(|f| retry_verdict(&retriers, &f.error, config.retrier_retry_count));
        let status = match (&outcome, &verdict) {
            (_, Some(RetryVerdict::Retry { .. })) => TestStatus::Retriable,
            (Outcome::Failed(_), _) => TestStatus::Failed,
            (Outcome::Succeeded(_), _) if caught.is_some() => TestStatus::CaughtError,
            (Outcome::Succeeded(_), _) => TestStatus::Succeeded,
        };
        let mut v = Map::new();
        if let Outcome::Succeeded(out) = &outcome {
            if status != TestStatus::Retriable {
                v.insert("output".into(), json!(texts.render(out)));
            }
        }
        if let Some(f) = &failure {
            v.insert("error".into(), json!(f.error));
            v.insert("cause".into(), json!(f.cause.clone().unwrap_or_default()));
        }
        v.insert("status".into(), json!(status.as_str()));
        if !ends || status == TestStatus::CaughtError {
            if let Some(n) =
                next.filter(|_| matches!(status, TestStatus::Succeeded | TestStatus::CaughtError))
            {
                v.insert("nextState".into(), json!(n));
            }
        }
        if let Some(mut data) = exec.inspection() {
            match verdict {
                Some(RetryVerdict::Retry {
                    index,
                    backoff_seconds,
                }) => {
                    data.insert(
                        "errorDetails".into(),
                        json!({"retryIndex": index, "retryBackoffIntervalSeconds": backoff_seconds}),
                    );
                }
                Some(RetryVerdict::Exhausted { index }) => {
                    let details = data.entry("errorDetails").or_insert_with(|| json!({}));
                    if let Some(d) = details.as_object_mut() {
                        d.insert("retryIndex".into(), json!(index));
                    }
                }
                None => {}
            }
            if parallel && answer.is_some() {
                data.retain(|k, _| PARALLEL_INSPECTION.contains(&k.as_str()));
            }
            v.insert("inspectionData".into(), inspection_json(data, &texts));
        }
        Ok(Value::Object(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(state: Value) -> Kind {
        let m = parse_machine(&machine_json("S", &state)).unwrap();
        m.states["S"].kind.clone()
    }

    fn mock(result: &str, validation: FieldValidation) -> Mock {
        Mock {
            result: Some(result.into()),
            error: None,
            validation,
        }
    }

    fn message(r: R<MockAnswer>) -> String {
        match r {
            Err(e) => e.message.clone(),
            Ok(a) => format!("accepted: {a:?}"),
        }
    }

    #[test]
    fn a_mock_must_fit_the_state_it_stands_in_for() {
        let parallel = kind_of(json!({"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}},
            {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true}}}]}));
        let strict = FieldValidation::Strict;
        assert_eq!(
            message(mock_answer(&mock("{}", strict), &parallel)),
            "Mocked result must be an array."
        );
        assert_eq!(
            message(mock_answer(&mock("[1]", strict), &parallel)),
            "Mocked result must contain the same number of items as number of Parallel branches."
        );
        assert!(mock_answer(&mock("[1, 2]", strict), &parallel).is_ok());
        let task = kind_of(json!({"Type": "Task", "End": true,
            "Resource": "arn:aws:states:::dynamodb:getItem"}));
        assert_eq!(
            message(mock_answer(&mock(r#"{"Item": []}"#, strict), &task)),
            "Mock result schema validation error: Field 'Item' must be an object"
        );
        assert!(mock_answer(&mock(r#"{"Item": []}"#, FieldValidation::None), &task).is_ok());
        assert_eq!(
            message(mock_answer(&mock("not json", strict), &task)),
            "Mocked result must be valid JSON"
        );
        let both = Mock {
            error: Some(Failure::new("E", "C")),
            ..mock("{}", strict)
        };
        assert_eq!(
            message(mock_answer(&both, &task)),
            "A test mock should have only one of the following fields: [result, errorOutput]."
        );
    }

    #[test]
    fn retries_already_made_decide_between_retriable_and_exhausted() {
        let kind = kind_of(json!({"Type": "Task", "End": true,
            "Resource": "arn:aws:states:::lambda:invoke",
            "Retry": [{"ErrorEquals": ["Other"]},
                      {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1,
                       "MaxAttempts": 5, "BackoffRate": 2.0, "MaxDelaySeconds": 10}]}));
        let retriers = &kind.handling().unwrap().retry;
        let at = |n| retry_verdict(retriers, "Boom", n);
        assert!(matches!(
            at(0),
            Some(RetryVerdict::Retry {
                index: 1,
                backoff_seconds: 1
            })
        ));
        assert!(matches!(
            at(3),
            Some(RetryVerdict::Retry {
                index: 1,
                backoff_seconds: 8
            })
        ));
        // MaxDelaySeconds caps 16.
        assert!(matches!(
            at(4),
            Some(RetryVerdict::Retry {
                index: 1,
                backoff_seconds: 10
            })
        ));
        assert!(matches!(at(5), Some(RetryVerdict::Exhausted { index: 1 })));
        // States.ALL never retries States.Runtime.
        assert!(retry_verdict(retriers, "States.Runtime", 0).is_none());
    }

    #[test]
    fn sent_values_come_back_in_the_text_they_were_sent_in() {
        let mut t = SentTexts::default();
        t.add(r#"{"a": [1, 2], "b": {"c": "d"}}"#);
        assert_eq!(t.render(&json!([1, 2])), "[1, 2]");
        assert_eq!(t.render(&json!({"c": "d"})), r#"{"c": "d"}"#);
        assert_eq!(t.render(&json!([2, 1])), "[2,1]");
        t.add("not json");
        assert_eq!(t.render(&json!("x")), r#""x""#);
    }
}
