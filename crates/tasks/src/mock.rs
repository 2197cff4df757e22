//! Mocked Task responses: Step Functions Local's MockConfigFile, unchanged, and the
//! same Return/Throw entries written inline by a `shoal test` suite.
//!
//! A mocked Task makes no call: its response is the service's raw answer (before
//! ResultSelector), or a failure that goes through Retry and Catch. Each execution
//! counts the calls of each state, retries, loops and Map iterations included, and
//! the count picks the response.

use serde_json::{Map, Value};
use shoal_expr::Failure;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A problem in a mock file, at a JSON pointer into it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct MockError {
    pub pointer: String,
    pub message: String,
}

fn err(pointer: impl Into<String>, message: impl Into<String>) -> MockError {
    MockError {
        pointer: pointer.into(),
        message: message.into(),
    }
}

/// One mocked response: the service answers, or the Task fails.
#[derive(Debug, Clone, PartialEq)]
pub enum MockAnswer {
    Return(Value),
    Throw(Failure),
}

/// The responses of one mock, by call index (0-based, ranges inclusive).
#[derive(Debug, Clone, PartialEq)]
pub struct MockedResponse {
    ranges: Vec<(u64, u64, MockAnswer)>,
    /// An inline mock given as one entry answers every call the same.
    every_call: bool,
}

impl MockedResponse {
    /// One answer for every call.
    pub fn always(answer: MockAnswer) -> MockedResponse {
        MockedResponse {
            ranges: vec![(0, u64::MAX, answer)],
            every_call: true,
        }
    }

    /// The answer to call number `index`, if the mock has one.
    pub fn answer(&self, index: u64) -> Option<&MockAnswer> {
        self.ranges
            .iter()
            .find(|(lo, hi, _)| *lo <= index && index <= *hi)
            .map(|(_, _, a)| a)
    }

    /// `{"0": {...}, "1-2": {...}}`, as Step Functions Local has it.
    pub fn parse_indexed(v: &Value, at: &str) -> Result<MockedResponse, MockError> {
        let Some(obj) = v.as_object() else {
            return Err(err(
                at,
                "a mocked response must be an object of call indexes (\"0\", \"1-2\")",
            ));
        };
        if obj.is_empty() {
            return Err(err(at, "a mocked response needs at least one call index"));
        }
        let mut ranges = Vec::new();
        for (key, entry) in obj {
            let here = format!("{at}/{}", escape(key));
            let (lo, hi) = parse_range(key).ok_or_else(|| {
                err(
                    &here,
                    format!("'{key}' is not a call index: use \"N\" or \"N-M\" with N <= M"),
                )
            })?;
            let answer = parse_answer(entry, &here)?;
            if let Some((a, b, _)) = ranges.iter().find(|(a, b, _)| lo <= *b && *a <= hi) {
                return Err(err(
                    &here,
                    format!("calls {lo}-{hi} overlap calls {a}-{b} of the same response"),
                ));
            }
            ranges.push((lo, hi, answer));
        }
        ranges.sort_by_key(|r| r.0);
        Ok(MockedResponse {
            ranges,
            every_call: false,
        })
    }

    /// A suite's inline mock: one entry answers every call; an array answers call i
    /// with entry i; an object of indexes is Step Functions Local's form.
    pub fn parse_inline(v: &Value, at: &str) -> Result<MockedResponse, MockError> {
        match v {
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(err(at, "a list of mocked responses cannot be empty"));
                }
                let ranges = items
                    .iter()
                    .enumerate()
                    .map(|(i, e)| Ok((i as u64, i as u64, parse_answer(e, &format!("{at}/{i}"))?)))
                    .collect::<Result<_, MockError>>()?;
                Ok(MockedResponse {
                    ranges,
                    every_call: false,
                })
            }
            Value::Object(o) if o.contains_key("Return") || o.contains_key("Throw") => {
                Ok(MockedResponse::always(parse_answer(v, at)?))
            }
            _ => MockedResponse::parse_indexed(v, at),
        }
    }

    fn describe_calls(&self) -> String {
        if self.every_call {
            return "every call".into();
        }
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|(a, b, _)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        format!("calls {}", parts.join(", "))
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn parse_range(key: &str) -> Option<(u64, u64)> {
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match key.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            (a <= b).then_some((a, b))
        }
        None => num(key).map(|n| (n, n)),
    }
}

fn parse_answer(v: &Value, at: &str) -> Result<MockAnswer, MockError> {
    let Some(obj) = v.as_object() else {
        return Err(err(at, "a response must be an object with Return or Throw"));
    };
    let unknown: Vec<&String> = obj
        .keys()
        .filter(|k| *k != "Return" && *k != "Throw")
        .collect();
    if let Some(k) = unknown.first() {
        return Err(err(
            format!("{at}/{}", escape(k)),
            "unknown field: a response has exactly one of Return or Throw",
        ));
    }
    match (obj.get("Return"), obj.get("Throw")) {
        (Some(r), None) => Ok(MockAnswer::Return(r.clone())),
        (None, Some(t)) => {
            let here = format!("{at}/Throw");
            let Some(t) = t.as_object() else {
                return Err(err(here, "Throw must be an object with Error and Cause"));
            };
            let field = |name: &str| match t.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(err(
                    format!("{here}/{name}"),
                    format!("{name} must be a string"),
                )),
            };
            let error = field("Error")?.ok_or_else(|| err(&here, "Throw needs an Error"))?;
            if let Some(k) = t.keys().find(|k| *k != "Error" && *k != "Cause") {
                return Err(err(
                    format!("{here}/{}", escape(k)),
                    "unknown field: Throw has Error and Cause",
                ));
            }
            Ok(MockAnswer::Throw(Failure {
                error,
                cause: field("Cause")?,
            }))
        }
        _ => Err(err(at, "a response has exactly one of Return or Throw")),
    }
}

/// A parsed MockConfigFile.
#[derive(Debug, Clone, Default)]
pub struct MockConfig {
    /// State machine name → test case name → state name → mocked response name.
    machines: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    responses: BTreeMap<String, Arc<MockedResponse>>,
}

impl MockConfig {
    /// Parses Step Functions Local's format; every problem is reported, each at its
    /// JSON pointer.
    pub fn parse(text: &str) -> Result<MockConfig, Vec<MockError>> {
        let v: Value = serde_json::from_str(text).map_err(|e| {
            vec![err(
                "",
                format!("not JSON: {e} (line {}, column {})", e.line(), e.column()),
            )]
        })?;
        let mut errors = Vec::new();
        let Some(top) = v.as_object() else {
            return Err(vec![err("", "a mock file is a JSON object")]);
        };
        for k in top.keys() {
            if k != "StateMachines" && k != "MockedResponses" {
                errors.push(err(
                    format!("/{}", escape(k)),
                    "unknown field: a mock file has StateMachines and MockedResponses",
                ));
            }
        }
        let empty = Map::new();
        let object = |key: &str, errors: &mut Vec<MockError>| match top.get(key) {
            None => &empty,
            Some(Value::Object(o)) => o,
            Some(_) => {
                errors.push(err(format!("/{key}"), "must be an object"));
                &empty
            }
        };
        let mut config = MockConfig::default();
        for (name, r) in object("MockedResponses", &mut errors) {
            match MockedResponse::parse_indexed(r, &format!("/MockedResponses/{}", escape(name))) {
                Ok(r) => {
                    config.responses.insert(name.clone(), Arc::new(r));
                }
                Err(e) => errors.push(e),
            }
        }
        let responses = object("MockedResponses", &mut Vec::new());
        for (machine, m) in object("StateMachines", &mut errors) {
            let at = format!("/StateMachines/{}", escape(machine));
            let cases = match m.get("TestCases") {
                Some(Value::Object(c)) => c,
                _ => {
                    errors.push(err(&at, "a state machine needs a TestCases object"));
                    continue;
                }
            };
            if let Some(k) = m
                .as_object()
                .and_then(|o| o.keys().find(|k| *k != "TestCases"))
            {
                errors.push(err(format!("{at}/{}", escape(k)), "unknown field"));
            }
            let mut by_case = BTreeMap::new();
            for (case, states) in cases {
                let at = format!("{at}/TestCases/{}", escape(case));
                let Some(states) = states.as_object() else {
                    errors.push(err(&at, "a test case maps state names to mocked responses"));
                    continue;
                };
                let mut by_state = BTreeMap::new();
                for (state, response) in states {
                    let here = format!("{at}/{}", escape(state));
                    match response.as_str() {
                        Some(r) if responses.contains_key(r) => {
                            by_state.insert(state.clone(), r.to_string());
                        }
                        Some(r) => errors.push(err(
                            here,
                            format!("no mocked response '{r}' in MockedResponses"),
                        )),
                        None => errors.push(err(here, "must name a mocked response")),
                    }
                }
                by_case.insert(case.clone(), by_state);
            }
            config.machines.insert(machine.clone(), by_case);
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// The mocks of one test case of one state machine.
    pub fn test_case(&self, machine: &str, case: &str) -> Result<TestCaseMocks, MockError> {
        let Some(cases) = self.machines.get(machine) else {
            let known: Vec<&str> = self.machines.keys().map(String::as_str).collect();
            return Err(err(
                "/StateMachines",
                format!(
                    "no state machine '{machine}' in the mock file (it has: {})",
                    known.join(", ")
                ),
            ));
        };
        let Some(states) = cases.get(case) else {
            let known: Vec<&str> = cases.keys().map(String::as_str).collect();
            return Err(err(
                format!("/StateMachines/{}/TestCases", escape(machine)),
                format!("no test case '{case}' (it has: {})", known.join(", ")),
            ));
        };
        let mut mocks = TestCaseMocks::default();
        for (state, response) in states {
            mocks
                .states
                .insert(state.clone(), self.responses[response].clone());
        }
        Ok(mocks)
    }

    /// A named mocked response, for a suite that reuses the file's responses.
    pub fn response(&self, name: &str) -> Option<Arc<MockedResponse>> {
        self.responses.get(name).cloned()
    }
}

/// State name → its mocked response.
#[derive(Debug, Clone, Default)]
pub struct TestCaseMocks {
    states: HashMap<String, Arc<MockedResponse>>,
}

impl TestCaseMocks {
    pub fn insert(&mut self, state: impl Into<String>, response: MockedResponse) {
        self.states.insert(state.into(), Arc::new(response));
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

/// The mocks one execution runs with, and its call counters.
#[derive(Debug, Default)]
pub struct MockSession {
    mocks: TestCaseMocks,
    calls: Mutex<HashMap<String, u64>>,
}

impl MockSession {
    pub fn new(mocks: TestCaseMocks) -> MockSession {
        MockSession {
            mocks,
            calls: Mutex::default(),
        }
    }

    /// Whether a Task of this state is mocked.
    pub fn mocks(&self, state: &str) -> bool {
        self.mocks.states.contains_key(state)
    }

    /// The response to this state's next call, counting it; `None` when the state is
    /// not mocked (its real integration runs). A call the mock has no response for
    /// fails with `States.Runtime`.
    pub fn next(&self, state: &str) -> Option<Result<Value, Failure>> {
        let response = self.mocks.states.get(state)?;
        let index = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let n = calls.entry(state.to_string()).or_insert(0);
            let i = *n;
            *n += 1;
            i
        };
        Some(match response.answer(index) {
            Some(MockAnswer::Return(v)) => Ok(v.clone()),
            Some(MockAnswer::Throw(f)) => Err(f.clone()),
            None => Err(Failure::runtime(format!(
                "The mocked response of state '{state}' has no entry for call {index} (it has {})",
                response.describe_calls()
            ))),
        })
    }
}

/// A mock file on disk, read again when it changes (`--mock-config`,
/// `SFN_MOCK_CONFIG`).
pub struct MockFile {
    path: std::path::PathBuf,
    loaded: Mutex<(Option<std::time::SystemTime>, Arc<MockConfig>)>,
}

/// Why a mock file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MockFileError {
    #[error("cannot read the mock file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the mock file {path} is not valid:\n{}", .errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: String,
        errors: Vec<MockError>,
    },
}

impl MockFile {
    /// Reads and checks the file now, so a bad one is refused at start.
    pub fn open(path: impl Into<std::path::PathBuf>) -> Result<MockFile, MockFileError> {
        let path = path.into();
        let (mtime, config) = Self::load(&path)?;
        Ok(MockFile {
            path,
            loaded: Mutex::new((mtime, Arc::new(config))),
        })
    }

    fn load(
        path: &std::path::Path,
    ) -> Result<(Option<std::time::SystemTime>, MockConfig), MockFileError> {
        let shown = path.display().to_string();
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(path).map_err(|source| MockFileError::Read {
            path: shown.clone(),
            source,
        })?;
        let config = MockConfig::parse(&text).map_err(|errors| MockFileError::Invalid {
            path: shown,
            errors,
        })?;
        Ok((mtime, config))
    }

    /// The file as it is now: read again if it changed since it was last read.
    pub fn current(&self) -> Result<Arc<MockConfig>, MockFileError> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if mtime != loaded.0 {
            let (mtime, config) = Self::load(&self.path)?;
            *loaded = (mtime, Arc::new(config));
        }
        Ok(loaded.1.clone())
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// `arn:...:stateMachine:M#Case` → the ARN and the test case. A bare trailing `#`
/// runs without mocks.
pub fn split_test_case(arn: &str) -> (&str, Option<&str>) {
    match arn.split_once('#') {
        Some((arn, "")) => (arn, None),
        Some((arn, case)) => (arn, Some(case)),
        None => (arn, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The example of Step Functions Local's documentation.
    const AWS_EXAMPLE: &str = r#"{
      "StateMachines": {"LambdaSQSIntegration": {"TestCases": {
        "HappyPath": {"LambdaState": "MockedLambdaSuccess", "SQSState": "MockedSQSSuccess"},
        "RetryPath": {"LambdaState": "MockedLambdaRetry", "SQSState": "MockedSQSSuccess"},
        "HybridPath": {"LambdaState": "MockedLambdaSuccess"}}}},
      "MockedResponses": {
        "MockedLambdaSuccess": {"0": {"Return": {"StatusCode": 200, "Payload": {"StatusCode": 200, "body": "Hello from Lambda!"}}}},
        "LambdaMockedResourceNotReady": {"0": {"Throw": {"Error": "Lambda.ResourceNotReadyException", "Cause": "Lambda resource is not ready."}}},
        "MockedSQSSuccess": {"0": {"Return": {"MD5OfMessageBody": "3bcb6e8e-7h85-4375-b0bc-1a59812c6e51", "MessageId": "3bcb6e8e-8b51-4375-b0bc-1a59812c6e51"}}},
        "MockedLambdaRetry": {
          "0": {"Throw": {"Error": "Lambda.ResourceNotReadyException", "Cause": "Lambda resource is not ready."}},
          "1-2": {"Throw": {"Error": "Lambda.TimeoutException", "Cause": "Lambda timed out."}},
          "3": {"Return": {"StatusCode": 200, "Payload": {"StatusCode": 200, "body": "Hello from Lambda!"}}}}}}"#;

    #[test]
    fn the_documented_example_counts_calls_per_state() {
        let config = MockConfig::parse(AWS_EXAMPLE).unwrap();
        let session = MockSession::new(
            config
                .test_case("LambdaSQSIntegration", "RetryPath")
                .unwrap(),
        );
        let errors: Vec<String> = (0..3)
            .map(|_| session.next("LambdaState").unwrap().unwrap_err().error)
            .collect();
        assert_eq!(
            errors,
            [
                "Lambda.ResourceNotReadyException",
                "Lambda.TimeoutException",
                "Lambda.TimeoutException"
            ]
        );
        assert_eq!(
            session.next("LambdaState").unwrap().unwrap()["Payload"]["body"],
            "Hello from Lambda!"
        );
        // The SQS state has its own counter.
        assert!(session.next("SQSState").unwrap().is_ok());
        let past = session.next("LambdaState").unwrap().unwrap_err();
        assert_eq!(past.error, "States.Runtime");
        assert!(past.cause.unwrap().contains("no entry for call 4"));
        assert!(session.next("Unmocked").is_none());
    }

    #[test]
    fn every_problem_is_reported_at_its_pointer() {
        let bad = json!({
            "StateMachines": {"M": {"TestCases": {"C": {"S": "Missing", "T": 3}}}},
            "MockedResponses": {
                "Both": {"0": {"Return": 1, "Throw": {"Error": "E"}}},
                "Overlap": {"0-2": {"Return": 1}, "2": {"Return": 2}},
                "BadKey": {"x": {"Return": 1}},
                "NoError": {"0": {"Throw": {"Cause": "c"}}}},
            "Extra": 1
        });
        let errors = MockConfig::parse(&bad.to_string()).unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        for p in [
            "/Extra",
            "/MockedResponses/Both/0",
            "/MockedResponses/Overlap/2",
            "/MockedResponses/BadKey/x",
            "/MockedResponses/NoError/0/Throw",
            "/StateMachines/M/TestCases/C/S",
            "/StateMachines/M/TestCases/C/T",
        ] {
            assert!(pointers.contains(&p), "{p} missing from {errors:?}");
        }
        assert_eq!(
            MockConfig::parse("{").unwrap_err()[0].pointer,
            "",
            "a file that is not JSON is refused as a whole"
        );
    }

    #[test]
    fn unknown_machines_and_cases_name_what_the_file_has() {
        let config = MockConfig::parse(AWS_EXAMPLE).unwrap();
        let e = config.test_case("Other", "HappyPath").unwrap_err();
        assert!(e.message.contains("LambdaSQSIntegration"), "{e}");
        let e = config
            .test_case("LambdaSQSIntegration", "Nope")
            .unwrap_err();
        assert!(e.message.contains("HappyPath"), "{e}");
    }

    #[test]
    fn a_test_case_follows_the_arn_after_a_hash() {
        let arn = "arn:aws:states:us-east-1:123456789012:stateMachine:M";
        assert_eq!(
            split_test_case(&format!("{arn}#Happy")),
            (arn, Some("Happy"))
        );
        assert_eq!(split_test_case(&format!("{arn}#")), (arn, None));
        assert_eq!(split_test_case(arn), (arn, None));
    }

    #[test]
    fn a_changed_file_is_read_again() {
        let dir = std::env::temp_dir().join(format!("shoal-mock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("MockConfigFile.json");
        std::fs::write(&path, AWS_EXAMPLE).unwrap();
        let file = MockFile::open(&path).unwrap();
        assert!(file
            .current()
            .unwrap()
            .test_case("LambdaSQSIntegration", "HappyPath")
            .is_ok());
        let renamed = AWS_EXAMPLE.replace("HappyPath", "SunnyPath");
        // Another length and a later mtime: filesystems with coarse mtimes see it too.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, renamed).unwrap();
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(t)
            .unwrap();
        let now = file.current().unwrap();
        assert!(now.test_case("LambdaSQSIntegration", "SunnyPath").is_ok());
        std::fs::write(&path, "{").unwrap();
        let t = t + std::time::Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(t)
            .unwrap();
        assert!(matches!(file.current(), Err(MockFileError::Invalid { .. })));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn inline_mocks_answer_every_call_or_one_call_each() {
        let one = MockedResponse::parse_inline(&json!({"Return": {"ok": true}}), "").unwrap();
        assert_eq!(
            one.answer(7),
            Some(&MockAnswer::Return(json!({"ok": true})))
        );
        let list = MockedResponse::parse_inline(
            &json!([{"Throw": {"Error": "Busy", "Cause": "busy"}}, {"Return": 1}]),
            "/m",
        )
        .unwrap();
        assert!(matches!(list.answer(0), Some(MockAnswer::Throw(_))));
        assert_eq!(list.answer(1), Some(&MockAnswer::Return(json!(1))));
        assert_eq!(list.answer(2), None);
        let e = MockedResponse::parse_inline(&json!([{"Retrun": 1}]), "/m").unwrap_err();
        assert_eq!(e.pointer, "/m/0/Retrun");
    }
}
