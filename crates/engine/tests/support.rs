//! A test host: runs an execution to completion on a virtual clock.
//! `arn:aws:states:::test:echo` returns its input; `arn:aws:states:::test:fail:<Error>`
//! always fails with that error.
//! Distributed Map children run one at a time on the same clock.

use serde_json::Value;
use shoal_engine::maprun::{ChildEnd, MapRun, Source};
use shoal_engine::{Effect, Event, Execution, ExecutionInfo, Failure, Outcome, SplitMix};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

pub struct Run {
    pub outcome: Outcome,
    /// (time fired, effect id) of every timer, in firing order.
    pub timers: Vec<(i64, u64)>,
    pub invocations: usize,
    /// The top-level execution's history: (type, details).
    pub history: Vec<(&'static str, Value)>,
}

pub fn run(definition: &str, input: Value) -> Run {
    let parsed = shoal_asl::parse(definition);
    assert!(
        parsed.diagnostics.is_empty(),
        "invalid definition: {:?}",
        parsed.diagnostics
    );
    let machine = Arc::new(parsed.machine.expect("a machine"));
    let entropy = SplitMix::new(42);
    let info = ExecutionInfo::local("test", "exec", 0, false, &entropy);
    let mut exec = Execution::new(machine, info, input, Box::new(entropy));
    let mut run = Run {
        outcome: Outcome::Succeeded(Value::Null),
        timers: Vec::new(),
        invocations: 0,
        history: Vec::new(),
    };
    let mut clock = 0;
    run.outcome = drive(&mut exec, &mut clock, &mut run);
    run.history = exec
        .history()
        .iter()
        .map(|h| (h.kind, h.details.clone()))
        .collect();
    run
}

fn drive(exec: &mut Execution, clock: &mut i64, run: &mut Run) -> Outcome {
    let mut timers: BTreeSet<(i64, u64)> = BTreeSet::new();
    let mut queue = VecDeque::from([Event::Start]);
    loop {
        let event = match queue.pop_front() {
            Some(e) => e,
            None => {
                let (at, id) = timers.pop_first().expect("stuck: no pending timer");
                *clock = (*clock).max(at);
                run.timers.push((at, id));
                Event::TimerFired { id }
            }
        };
        for effect in exec.handle(event, *clock).expect("engine error") {
            match effect {
                Effect::Complete(outcome) => return outcome,
                Effect::Timer { id, fire_at_ms } => {
                    timers.insert((fire_at_ms, id));
                }
                Effect::Invoke {
                    id,
                    resource,
                    input,
                    ..
                } => {
                    run.invocations += 1;
                    let action = match &*resource {
                        shoal_asl::Resource::Service {
                            service, action, ..
                        } if service == "test" => action.as_str(),
                        _ => "",
                    };
                    queue.push_back(match action.strip_prefix("fail:") {
                        Some(err) => Event::TaskFailed {
                            id,
                            failure: Failure::new(err, "always fails"),
                        },
                        None if action == "echo" => Event::TaskSucceeded { id, output: input },
                        None => Event::TaskFailed {
                            id,
                            failure: Failure::runtime(format!("unknown resource {resource}")),
                        },
                    });
                }
                Effect::StartMapRun { id, state, spec } => {
                    let result = map_run(spec, &state, clock, run);
                    queue.push_back(Event::MapRunFinished { id, result });
                }
            }
        }
    }
}

fn map_run(
    spec: Arc<shoal_engine::MapRunSpec>,
    state: &str,
    clock: &mut i64,
    run: &mut Run,
) -> Result<Value, Failure> {
    let Source::Items(items) = &spec.source else {
        return Err(Failure::new(
            "States.ItemReaderFailed",
            "no buckets in tests",
        ));
    };
    if spec.writer.is_some() {
        return Err(Failure::new(
            "States.ResultWriterFailed",
            "no buckets in tests",
        ));
    }
    let mut mr = MapRun::new(spec.clone(), state, 7);
    for item in items.clone() {
        mr.push_item(item);
    }
    mr.items_end();
    while !mr.is_over() {
        let child = mr.next_child(*clock).expect("a child to run");
        let mut exec = Execution::new(
            spec.processor.clone(),
            child.info.clone(),
            child.input.clone(),
            Box::new(SplitMix::new(child.index)),
        );
        let end = match drive(&mut exec, clock, run) {
            Outcome::Succeeded(v) => ChildEnd::Succeeded(v),
            Outcome::Failed(f) => ChildEnd::Failed(f),
        };
        mr.child_ended(&child, end);
    }
    mr.finish(None)
}
