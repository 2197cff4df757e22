//! The ASL interpreter. It takes [`Event`]s and returns [`Effect`]s as data.
//!
//! Architecture invariant: `engine` never awaits, never does I/O and never reads a
//! clock or randomness directly. Time arrives with each event; randomness comes
//! from the injected [`Entropy`]. The runtime performs the effects.

mod exec;
mod info;
pub mod maprun;

pub use exec::{Execution, Options, Trace};
pub use info::ExecutionInfo;
pub use maprun::MapRunSpec;
pub use shoal_asl::identity::{self, iso_time};
pub use shoal_expr::{Entropy, Failure, SplitMix};

use serde_json::Value;

/// Identifies one outstanding effect, so that its completion finds its way back.
pub type EffectId = u64;

/// Something the engine needs the outside world to do.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Run a Task's resource with this input.
    Invoke {
        id: EffectId,
        state: String,
        resource: std::sync::Arc<shoal_asl::Resource>,
        input: Value,
        timeout_seconds: Option<f64>,
        heartbeat_seconds: Option<f64>,
        /// For `.waitForTaskToken` and activities: the token whose answer ends the task.
        task_token: Option<String>,
    },
    /// Call back with [`Event::TimerFired`] at (or after) this time.
    Timer { id: EffectId, fire_at_ms: i64 },
    /// Carry out a Distributed Map run; answer with [`Event::MapRunFinished`].
    StartMapRun {
        id: EffectId,
        state: String,
        spec: std::sync::Arc<MapRunSpec>,
    },
    /// The execution is over.
    Complete(Outcome),
}

/// Something that happened outside the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Start,
    TaskSucceeded {
        id: EffectId,
        output: Value,
    },
    TaskFailed {
        id: EffectId,
        failure: Failure,
    },
    TimerFired {
        id: EffectId,
    },
    /// An activity worker took the task (GetActivityTask). The task goes on waiting;
    /// only the history changes.
    ActivityStarted {
        id: EffectId,
        worker_name: String,
    },
    /// A callback task's call returned (`output` is its response); the task now waits
    /// for its token. Only the history changes.
    TaskSubmitted {
        id: EffectId,
        output: Value,
    },
    /// The map run ended: the Map state's result (before ResultSelector), or its failure.
    MapRunFinished {
        id: EffectId,
        result: Result<Value, Failure>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Value),
    Failed(Failure),
}

/// One entry of the execution history, with AWS's event type names.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    pub id: u64,
    pub timestamp_ms: i64,
    pub kind: &'static str,
    pub details: Value,
}

/// Why the engine itself could not go on (not an ASL failure).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("event for unknown effect {0}")]
    UnknownEffect(EffectId),
    #[error("the execution has already completed")]
    Completed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The delay before retry number `attempt` (0-based) of a retrier, in milliseconds.
/// `jitter` is a uniform sample in [0, 1), used only with JitterStrategy FULL.
pub fn retry_delay_ms(r: &shoal_asl::Retrier, attempt: u32, jitter: f64) -> i64 {
    let mut secs = r.interval_seconds * r.backoff_rate.powi(attempt as i32);
    if let Some(max) = r.max_delay_seconds {
        secs = secs.min(max);
    }
    if r.jitter_full {
        secs *= jitter;
    }
    (secs * 1000.0).round() as i64
}
