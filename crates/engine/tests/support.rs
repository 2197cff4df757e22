//! A test host: runs an execution to completion on a virtual clock.
//! `test:echo` returns its input; `test:fail:<Error>` always fails with that error.

use serde_json::Value;
use shoal_engine::{Effect, Event, Execution, ExecutionInfo, Failure, Outcome, SplitMix};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

pub struct Run {
    pub outcome: Outcome,
    /// (time fired, effect id) of every timer, in firing order.
    pub timers: Vec<(i64, u64)>,
    pub invocations: usize,
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
    let mut clock = 0i64;
    let mut timers: BTreeSet<(i64, u64)> = BTreeSet::new();
    let mut fired = Vec::new();
    let mut invocations = 0;
    let mut queue = VecDeque::from([Event::Start]);
    loop {
        let event = match queue.pop_front() {
            Some(e) => e,
            None => {
                let (at, id) = timers.pop_first().expect("stuck: no pending timer");
                clock = clock.max(at);
                fired.push((at, id));
                Event::TimerFired { id }
            }
        };
        for effect in exec.handle(event, clock).expect("engine error") {
            match effect {
                Effect::Complete(outcome) => {
                    return Run {
                        outcome,
                        timers: fired,
                        invocations,
                    }
                }
                Effect::Timer { id, fire_at_ms } => {
                    timers.insert((fire_at_ms, id));
                }
                Effect::Invoke {
                    id,
                    resource,
                    input,
                    ..
                } => {
                    invocations += 1;
                    queue.push_back(match resource.strip_prefix("test:fail:") {
                        Some(err) => Event::TaskFailed {
                            id,
                            failure: Failure::new(err, "always fails"),
                        },
                        None if resource == "test:echo" => {
                            Event::TaskSucceeded { id, output: input }
                        }
                        None => Event::TaskFailed {
                            id,
                            failure: Failure::runtime(format!("unknown resource {resource}")),
                        },
                    });
                }
                Effect::WriteResults { id, .. } => queue.push_back(Event::ResultsWritten {
                    id,
                    details: Err(Failure::new(
                        "States.ResultWriterFailed",
                        "no buckets in tests",
                    )),
                }),
                Effect::ReadItems { id, .. } => queue.push_back(Event::ItemsRead {
                    id,
                    items: Err(Failure::new(
                        "States.ItemReaderFailed",
                        "no buckets in tests",
                    )),
                }),
            }
        }
    }
}
