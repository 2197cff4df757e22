//! What travels on NATS: a child as a worker receives it, its end as the worker
//! reports it, and a worker's announcement.

use super::*;

/// One child, as a worker receives it.
#[derive(Serialize, Deserialize)]
pub(crate) struct Work {
    pub(crate) map_run: String,
    pub(crate) index: u64,
    pub(crate) definition: String,
    pub(crate) info: Info,
    pub(crate) input: Value,
    pub(crate) max_deliver: i64,
    pub(crate) ack_wait_ms: u64,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Info {
    pub(crate) execution_arn: String,
    pub(crate) name: String,
    pub(crate) state_machine_arn: String,
    pub(crate) state_machine_name: String,
    pub(crate) role_arn: String,
    pub(crate) start_time_ms: i64,
    pub(crate) redrive_count: u32,
}

impl From<&ExecutionInfo> for Info {
    fn from(i: &ExecutionInfo) -> Info {
        Info {
            execution_arn: i.execution_arn.clone(),
            name: i.name.clone(),
            state_machine_arn: i.state_machine_arn.clone(),
            state_machine_name: i.state_machine_name.clone(),
            role_arn: i.role_arn.clone(),
            start_time_ms: i.start_time_ms,
            redrive_count: i.redrive_count,
        }
    }
}

impl From<Info> for ExecutionInfo {
    fn from(i: Info) -> ExecutionInfo {
        ExecutionInfo {
            execution_arn: i.execution_arn,
            name: i.name,
            state_machine_arn: i.state_machine_arn,
            state_machine_name: i.state_machine_name,
            role_arn: i.role_arn,
            start_time_ms: i.start_time_ms,
            redrive_count: i.redrive_count,
        }
    }
}

/// A child's end, as a worker reports it.
#[derive(Serialize, Deserialize)]
pub(crate) struct Done {
    pub(crate) index: u64,
    pub(crate) worker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cause: Option<String>,
}

impl Done {
    pub(crate) fn end(self) -> ChildEnd {
        match self.error {
            None => ChildEnd::Succeeded(self.output.unwrap_or(Value::Null)),
            Some(error) => ChildEnd::Failed(Failure {
                error,
                cause: self.cause,
            }),
        }
    }
}

/// What `shoal workers` shows of one worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub functions: Vec<String>,
    pub concurrency: usize,
    pub running: u64,
    pub done: u64,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
}

/// SendTaskSuccess, SendTaskFailure or SendTaskHeartbeat for a token this process does
/// not hold, asked of every worker on [`CALLBACKS`]; the one that holds it replies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CallbackAnswer {
    Success {
        token: String,
        output: Value,
    },
    Failure {
        token: String,
        error: String,
        cause: Option<String>,
    },
    Heartbeat {
        token: String,
    },
}

/// The subject callback answers travel on (core NATS request/reply, not JetStream: an
/// answer no worker holds is refused at once, not kept).
pub(crate) const CALLBACKS: &str = "shoal.callback";

/// A worker's reply: it held the token and the answer reached its task, or the task
/// had timed out.
pub(crate) const HELD: &[u8] = b"ok";
pub(crate) const TIMED_OUT: &[u8] = b"TaskTimedOut";

impl CallbackAnswer {
    pub fn token(&self) -> &str {
        match self {
            CallbackAnswer::Success { token, .. }
            | CallbackAnswer::Failure { token, .. }
            | CallbackAnswer::Heartbeat { token } => token,
        }
    }

    /// Applies it to this process's waiting tasks.
    pub fn apply(
        self,
        callbacks: &shoal_runtime::callbacks::Callbacks,
    ) -> Result<(), shoal_runtime::callbacks::CallbackError> {
        use shoal_runtime::callbacks::Answer;
        match self {
            CallbackAnswer::Success { token, output } => {
                callbacks.answer(&token, Answer::Success(output))
            }
            CallbackAnswer::Failure {
                token,
                error,
                cause,
            } => callbacks.answer(&token, Answer::Failure(Failure { error, cause })),
            CallbackAnswer::Heartbeat { token } => callbacks.heartbeat(&token),
        }
    }
}
