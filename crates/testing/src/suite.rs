//! A suite file (YAML or JSON): the state machine, its mocks, and the cases with what
//! each expects. Loading checks everything it can before anything runs, and names
//! the file and the place of each problem.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;
use shoal_asl::{Kind, StateMachine};
use shoal_tasks::mock::{MockConfig, MockedResponse, TestCaseMocks};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A suite that cannot be run, and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct SuiteError {
    pub file: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SuiteFile {
    state_machine: Option<String>,
    definition: Option<Value>,
    /// The name the mock file's StateMachines uses (default: the definition file's).
    state_machine_name: Option<String>,
    mock_config: Option<String>,
    cases: Vec<CaseFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CaseFile {
    name: String,
    #[serde(default)]
    input: Option<Value>,
    test_case: Option<String>,
    #[serde(default)]
    mocks: IndexMap<String, Value>,
    #[serde(default)]
    real_time: bool,
    expect: ExpectFile,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExpectFile {
    status: Option<Status>,
    output: Option<Value>,
    output_contains: Option<Value>,
    error: Option<String>,
    cause: Option<CauseFile>,
    path: Option<Vec<String>>,
    path_includes: Option<Vec<String>>,
    state_outputs: Option<IndexMap<String, Value>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CauseFile {
    Exact(String),
    Pattern { regex: String },
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
            Status::Aborted => "ABORTED",
        }
    }
}

/// What a cause must be.
#[derive(Debug, Clone)]
pub enum CauseMatch {
    Exact(String),
    Regex(regex::Regex),
}

/// What a case expects; each field given is checked.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub status: Option<Status>,
    pub output: Option<Value>,
    pub output_contains: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<CauseMatch>,
    pub path: Option<Vec<String>>,
    pub path_includes: Option<Vec<String>>,
    pub state_outputs: IndexMap<String, Value>,
}

/// One case, ready to run.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub input: Value,
    pub mocks: TestCaseMocks,
    pub real_time: bool,
    pub expect: Expect,
}

/// A loaded suite.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The suite file as given.
    pub file: PathBuf,
    /// The definition's file (or the suite's, for an inline definition).
    pub definition_file: PathBuf,
    pub machine_name: String,
    pub machine: Arc<StateMachine>,
    pub cases: Vec<Case>,
}

impl Suite {
    pub fn load(file: &Path) -> Result<Suite, SuiteError> {
        let shown = file.display().to_string();
        let fail = |message: String| SuiteError {
            file: shown.clone(),
            message,
        };
        let text = std::fs::read_to_string(file).map_err(|e| fail(format!("cannot read: {e}")))?;
        // YAML is a superset of JSON: one parser reads both, with line and column.
        let parsed: SuiteFile = serde_yaml::from_str(&text).map_err(|e| {
            fail(match e.location() {
                Some(l) => format!("line {}, column {}: {e}", l.line(), l.column()),
                None => e.to_string(),
            })
        })?;
        let dir = file.parent().unwrap_or(Path::new("."));
        let (definition_file, definition) = match (&parsed.state_machine, &parsed.definition) {
            (Some(p), None) => {
                let path = dir.join(p);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    fail(format!(
                        "/stateMachine: cannot read {}: {e}",
                        path.display()
                    ))
                })?;
                (path, text)
            }
            (None, Some(Value::String(s))) => (file.to_path_buf(), s.clone()),
            (None, Some(v)) => (file.to_path_buf(), v.to_string()),
            (Some(_), Some(_)) => {
                return Err(fail(
                    "give stateMachine (a file) or definition (inline), not both".into(),
                ))
            }
            (None, None) => {
                return Err(fail(
                    "the suite needs stateMachine (a file) or definition (inline)".into(),
                ))
            }
        };
        let machine = shoal_asl::parse(&definition);
        let machine = match machine.machine.filter(|_| machine.diagnostics.is_empty()) {
            Some(m) => Arc::new(m),
            None => {
                let all: Vec<String> = machine
                    .diagnostics
                    .iter()
                    .map(|d| format!("  {d}"))
                    .collect();
                return Err(fail(format!(
                    "the definition {} is not valid:\n{}",
                    definition_file.display(),
                    all.join("\n")
                )));
            }
        };
        let machine_name = parsed.state_machine_name.clone().unwrap_or_else(|| {
            let stem = definition_file
                .file_name()
                .and_then(|s| s.to_str())
                .unwrap_or("state-machine");
            stem.split('.').next().unwrap_or(stem).to_string()
        });
        let config = match &parsed.mock_config {
            None => None,
            Some(p) => {
                let path = dir.join(p);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    fail(format!("/mockConfig: cannot read {}: {e}", path.display()))
                })?;
                Some(MockConfig::parse(&text).map_err(|errors| {
                    let all: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
                    fail(format!(
                        "the mock file {} is not valid:\n{}",
                        path.display(),
                        all.join("\n")
                    ))
                })?)
            }
        };
        let names = state_names(&machine);
        let mut seen = BTreeSet::new();
        let mut cases = Vec::new();
        if parsed.cases.is_empty() {
            return Err(fail("/cases: the suite has no cases".into()));
        }
        for (i, c) in parsed.cases.into_iter().enumerate() {
            let at = format!("/cases/{i}");
            if !seen.insert(c.name.clone()) {
                return Err(fail(format!("{at}/name: a second case named {:?}", c.name)));
            }
            let mut mocks = match (&c.test_case, &config) {
                (None, _) => TestCaseMocks::default(),
                (Some(t), Some(config)) => config
                    .test_case(&machine_name, t)
                    .map_err(|e| fail(format!("{at}/testCase: {}", e.message)))?,
                (Some(_), None) => {
                    return Err(fail(format!(
                        "{at}/testCase: a test case needs the suite's mockConfig"
                    )))
                }
            };
            for (state, m) in &c.mocks {
                let here = format!("{at}/mocks/{}", state.replace('~', "~0").replace('/', "~1"));
                if !names.contains(state.as_str()) {
                    return Err(fail(format!(
                        "{here}: the state machine has no state {state:?}"
                    )));
                }
                let response = match (m, &config) {
                    // The name of one of the mock file's MockedResponses.
                    (Value::String(name), Some(config)) => {
                        config.response(name).map(|r| (*r).clone()).ok_or_else(|| {
                            fail(format!("{here}: no mocked response {name:?} in mockConfig"))
                        })?
                    }
                    _ => MockedResponse::parse_inline(m, &here).map_err(|e| fail(e.to_string()))?,
                };
                mocks.insert(state.clone(), response);
            }
            let expect = expect(c.expect, &at, &names).map_err(fail)?;
            cases.push(Case {
                name: c.name,
                input: c.input.unwrap_or_else(|| Value::Object(Default::default())),
                mocks,
                real_time: c.real_time,
                expect,
            });
        }
        Ok(Suite {
            file: file.to_path_buf(),
            definition_file,
            machine_name,
            machine,
            cases,
        })
    }
}

fn expect(e: ExpectFile, at: &str, names: &BTreeSet<&str>) -> Result<Expect, String> {
    let cause = match e.cause {
        None => None,
        Some(CauseFile::Exact(s)) => Some(CauseMatch::Exact(s)),
        Some(CauseFile::Pattern { regex }) => Some(CauseMatch::Regex(
            regex::Regex::new(&regex).map_err(|err| format!("{at}/expect/cause/regex: {err}"))?,
        )),
    };
    let state_lists = [
        ("path", e.path.iter().flatten()),
        ("pathIncludes", e.path_includes.iter().flatten()),
    ];
    for (field, list) in state_lists {
        for s in list {
            if !names.contains(s.as_str()) {
                return Err(format!(
                    "{at}/expect/{field}: the state machine has no state {s:?}"
                ));
            }
        }
    }
    let state_outputs = e.state_outputs.unwrap_or_default();
    if let Some(s) = state_outputs.keys().find(|s| !names.contains(s.as_str())) {
        return Err(format!(
            "{at}/expect/stateOutputs: the state machine has no state {s:?}"
        ));
    }
    let expect = Expect {
        // An expected error implies a failed execution.
        status: e
            .status
            .or_else(|| (e.error.is_some() || cause.is_some()).then_some(Status::Failed)),
        output: e.output,
        output_contains: e.output_contains,
        error: e.error,
        cause,
        path: e.path,
        path_includes: e.path_includes,
        state_outputs,
    };
    let asserts = expect.status.is_some()
        || expect.output.is_some()
        || expect.output_contains.is_some()
        || expect.path.is_some()
        || expect.path_includes.is_some()
        || !expect.state_outputs.is_empty();
    if !asserts {
        return Err(format!(
            "{at}/expect: the case expects nothing; give a status, an output, a path, ..."
        ));
    }
    Ok(expect)
}

/// Every state's name, in branches and item processors too.
pub fn state_names(m: &StateMachine) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    walk(m, &mut |_, st| {
        out.insert(st.name.as_str());
    });
    out
}

/// Visits every state, nested ones after their parent, with the machine holding it.
pub fn walk<'a>(m: &'a StateMachine, f: &mut dyn FnMut(&'a StateMachine, &'a shoal_asl::State)) {
    for st in m.states.values() {
        f(m, st);
        match &st.kind {
            Kind::Parallel { branches, .. } => {
                for b in branches {
                    walk(b, f);
                }
            }
            Kind::Map(map) => walk(&map.processor, f),
            _ => {}
        }
    }
}
