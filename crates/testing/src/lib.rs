//! `shoal test`: suites of state machine tests. Each case runs its execution on the
//! shoal runtime with mocked Tasks (Step Functions Local's MockConfigFile format, or
//! inline), a fixed clock and fixed ids, and checks status, output, error, cause, the
//! states entered and their outputs. Cases run in parallel; Waits and retry backoff
//! take no wall time unless a case asks for `realTime`.

pub mod check;
pub mod coverage;
pub mod junit;
pub mod suite;

pub use suite::{Suite, SuiteError};

use check::Observed;
use serde_json::Value;
use shoal_engine::{Execution, ExecutionInfo, SplitMix, Trace};
use shoal_runtime::{Runtime, Scope};
use shoal_tasks::mock::MockSession;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use suite::{Case, Status};

/// Every case starts at this instant (2024-01-01T00:00:00Z), so timestamps and
/// `$$.Execution.StartTime` are the same on every run.
pub const START_MS: i64 = 1_704_067_200_000;

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    /// Empty when the case passed.
    pub differences: Vec<String>,
    pub seconds: f64,
    pub trace: Vec<Trace>,
}

/// A suite's results, its cases in file order.
#[derive(Debug, Clone)]
pub struct SuiteResult {
    pub file: String,
    pub cases: Vec<CaseResult>,
    pub seconds: f64,
}

impl SuiteResult {
    pub fn failed(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| !c.differences.is_empty())
            .count()
    }
}

/// Runs the suite's cases whose name contains `filter`, all at once.
pub async fn run_suite(rt: &Arc<Runtime>, suite: &Suite, filter: Option<&str>) -> SuiteResult {
    let started = Instant::now();
    let mut handles = Vec::new();
    for (i, case) in suite.cases.iter().enumerate() {
        if filter.is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        let (rt, machine, name) = (
            rt.clone(),
            suite.machine.clone(),
            suite.machine_name.clone(),
        );
        let case = case.clone();
        handles.push(tokio::spawn(async move {
            run_case(&rt, machine, &name, i, &case).await
        }));
    }
    let mut cases = Vec::new();
    for h in handles {
        cases.push(h.await.unwrap_or_else(|e| CaseResult {
            name: "?".into(),
            differences: vec![format!("the case panicked: {e}")],
            seconds: 0.0,
            trace: Vec::new(),
        }));
    }
    SuiteResult {
        file: suite.file.display().to_string(),
        cases,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// A stable seed for a case's ids and randomness: the same on every run.
fn seed(machine: &str, case: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{machine}\0{case}").as_bytes());
    u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
}

async fn run_case(
    rt: &Arc<Runtime>,
    machine: Arc<shoal_asl::StateMachine>,
    machine_name: &str,
    index: usize,
    case: &Case,
) -> CaseResult {
    let started = Instant::now();
    let seed = seed(machine_name, &case.name);
    let info = ExecutionInfo::local(
        machine_name,
        &format!("case-{}", index + 1),
        START_MS,
        false,
        &SplitMix::new(seed),
    );
    let mut exec = Execution::new(
        machine,
        info,
        case.input.clone(),
        Box::new(SplitMix::new(seed)),
    );
    exec.keep_trace();
    let scope = Scope {
        mocks: Some(Arc::new(MockSession::new(case.mocks.clone()))),
        virtual_time: !case.real_time,
    };
    let outcome = rt.drive_scoped(&mut exec, &scope).await;
    let observed = observe(&exec, outcome);
    CaseResult {
        name: case.name.clone(),
        differences: check::check(&case.expect, &observed),
        seconds: started.elapsed().as_secs_f64(),
        trace: exec.trace(),
    }
}

fn observe(exec: &Execution, outcome: shoal_engine::Outcome) -> Observed {
    let history = exec.history();
    let status = match history.last().map(|e| e.kind) {
        Some("ExecutionTimedOut") => Status::TimedOut,
        Some("ExecutionAborted") => Status::Aborted,
        _ => match &outcome {
            shoal_engine::Outcome::Succeeded(_) => Status::Succeeded,
            shoal_engine::Outcome::Failed(_) => Status::Failed,
        },
    };
    let mut state_outputs = HashMap::new();
    for e in history {
        if e.kind.ends_with("StateExited") {
            let name = e.details["name"].as_str().unwrap_or_default().to_string();
            let output = match &e.details["output"] {
                Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
                other => other.clone(),
            };
            state_outputs.insert(name, output);
        }
    }
    let path = exec
        .trace()
        .into_iter()
        .filter_map(|t| match t {
            Trace::Entered(s) => Some(s),
            _ => None,
        })
        .collect();
    let (output, error, cause) = match outcome {
        shoal_engine::Outcome::Succeeded(v) => (Some(v), None, None),
        shoal_engine::Outcome::Failed(f) => (None, Some(f.error), f.cause),
    };
    Observed {
        status,
        output,
        error,
        cause,
        path,
        state_outputs,
    }
}

/// The coverage of each state machine the suites ran, across all their cases.
pub fn coverage(suites: &[Suite], results: &[SuiteResult]) -> Vec<coverage::Report> {
    // Suites of the same definition file add up.
    let mut by_definition: indexmap::IndexMap<String, (&Suite, coverage::Taken)> =
        indexmap::IndexMap::new();
    for (suite, result) in suites.iter().zip(results) {
        let key = suite.definition_file.display().to_string();
        let entry = by_definition
            .entry(key)
            .or_insert_with(|| (suite, coverage::Taken::default()));
        for c in &result.cases {
            entry.1.add(&c.trace);
        }
    }
    by_definition
        .iter()
        .map(|(file, (suite, taken))| {
            coverage::Report::new(
                &suite.machine_name,
                file,
                &coverage::Model::of(&suite.machine),
                taken,
            )
        })
        .collect()
}
