//! Drives one execution in-process: performs the engine's effects with real time
//! (or a fast-forwarded clock) until it completes.

use anyhow::Result;
use serde_json::Value;
use shoal_asl::StateMachine;
use shoal_engine::{Effect, Event, Execution, ExecutionInfo, Failure, Outcome, SplitMix};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

pub struct Options {
    pub buckets: Option<PathBuf>,
    pub fast_forward: bool,
    pub name: Option<String>,
}

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn run(machine: StateMachine, sm_name: &str, input: Value, opts: &Options) -> Result<Outcome> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id());
    let entropy = SplitMix::new(seed);
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| shoal_expr::uuid_v4(&entropy));
    let start = wall_ms();
    let info = ExecutionInfo::local(sm_name, &name, start, false, &entropy);
    let mut exec = Execution::new(Arc::new(machine), info, input, Box::new(entropy));
    let buckets = opts
        .buckets
        .as_ref()
        .map(shoal_connectors::LocalBuckets::new);
    let mut clock = start;
    let mut timers: BinaryHeap<Reverse<(i64, u64)>> = BinaryHeap::new();
    let mut queue: VecDeque<Event> = VecDeque::from([Event::Start]);
    loop {
        let event = match queue.pop_front() {
            Some(e) => e,
            None => {
                let Some(Reverse((at, id))) = timers.pop() else {
                    anyhow::bail!("the execution is stuck: no event can arrive");
                };
                if opts.fast_forward {
                    clock = clock.max(at);
                } else {
                    let wait = at - wall_ms();
                    if wait > 0 {
                        std::thread::sleep(std::time::Duration::from_millis(wait as u64));
                    }
                }
                Event::TimerFired { id }
            }
        };
        let now = if opts.fast_forward { clock } else { wall_ms() };
        for effect in exec.handle(event, now)? {
            match effect {
                Effect::Complete(o) => return Ok(o),
                Effect::Timer { id, fire_at_ms } => timers.push(Reverse((fire_at_ms, id))),
                Effect::Invoke { id, resource, .. } => queue.push_back(Event::TaskFailed {
                    id,
                    failure: Failure::runtime(format!("The resource '{resource}' is not supported by this shoal build: no function or integration is registered for it")),
                }),
                Effect::WriteResults { id, parameters, writer_config, map_run_arn, entries, .. } => {
                    let details = shoal_connectors::results::write(buckets.as_ref(), &parameters, &writer_config, &map_run_arn, entries);
                    queue.push_back(Event::ResultsWritten { id, details });
                }
                Effect::ReadItems { id, resource, parameters, reader_config, .. } => {
                    let items = shoal_connectors::items::read(buckets.as_ref(), &resource, &parameters, &reader_config);
                    queue.push_back(Event::ItemsRead { id, items });
                }
            }
        }
    }
}
