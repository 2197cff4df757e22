//! SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat: answers for the tasks of
//! this server's executions that wait for a token.

use crate::api::{opt_str, req_str, validation, R};
use crate::{ApiError, Server};
use serde_json::{json, Value};
use shoal_runtime::callbacks::CallbackError;

/// AWS's limits on a token, an error and a cause.
const MAX_TOKEN: usize = 2048;
const MAX_ERROR: usize = 256;
const MAX_CAUSE: usize = 32_768;

impl From<CallbackError> for ApiError {
    fn from(e: CallbackError) -> ApiError {
        ApiError::new(e.code(), e.to_string())
    }
}

fn token(p: &Value) -> R<&str> {
    let t = req_str(p, "taskToken")?;
    if t.is_empty() || t.len() > MAX_TOKEN {
        return Err(validation(
            "taskToken",
            "Member must have length less than or equal to 2048",
        ));
    }
    Ok(t)
}

impl Server {
    /// Answers a local task, or, in fleet mode, the worker's that holds the token.
    async fn deliver(&self, a: shoal_fleet::CallbackAnswer) -> R {
        let local = a.clone().apply(self.runtime.callbacks());
        match (local, &self.fleet) {
            (Err(CallbackError::TaskDoesNotExist), Some(fleet)) => {
                fleet.forward_callback(&a).await?
            }
            (r, _) => r?,
        }
        Ok(json!({}))
    }

    pub(crate) async fn send_task_success(&self, p: &Value) -> R {
        let t = token(p)?;
        let text = req_str(p, "output")?;
        if text.len() > shoal_asl::identity::PAYLOAD_LIMIT {
            return Err(validation(
                "output",
                "Member must have length less than or equal to 262144",
            ));
        }
        let output: Value = serde_json::from_str(text)
            .map_err(|e| ApiError::new("InvalidOutput", format!("Invalid Output: '{e}'")))?;
        self.deliver(shoal_fleet::CallbackAnswer::Success {
            token: t.to_string(),
            output,
        })
        .await
    }

    pub(crate) async fn send_task_failure(&self, p: &Value) -> R {
        let t = token(p)?;
        let error = opt_str(p, "error")?;
        let cause = opt_str(p, "cause")?;
        if error.is_some_and(|e| e.len() > MAX_ERROR) {
            return Err(validation(
                "error",
                "Member must have length less than or equal to 256",
            ));
        }
        if cause.is_some_and(|c| c.len() > MAX_CAUSE) {
            return Err(validation(
                "cause",
                "Member must have length less than or equal to 32768",
            ));
        }
        self.deliver(shoal_fleet::CallbackAnswer::Failure {
            token: t.to_string(),
            error: error.unwrap_or_default().to_string(),
            cause: cause.map(str::to_string),
        })
        .await
    }

    /// `Shoal.ListWaitingTasks`: the tasks waiting for a token or for an activity
    /// worker, for the dashboard (optionally those of one execution).
    pub(crate) fn list_waiting_tasks(&self, p: &Value) -> R {
        let only = opt_str(p, "executionArn")?;
        let queued: std::collections::HashSet<String> = self
            .runtime
            .activities()
            .scheduled()
            .into_iter()
            .map(|s| s.token)
            .collect();
        let tasks: Vec<Value> = self
            .runtime
            .callbacks()
            .waiting_tasks()
            .into_iter()
            .filter(|w| only.is_none_or(|a| a == w.execution_arn))
            .map(|w| {
                let mut v = json!({
                    "executionArn": w.execution_arn, "stateName": w.about.state,
                    "taskToken": w.token, "since": crate::api::secs(w.about.since_ms),
                    "kind": if w.about.activity.is_some() { "ACTIVITY" } else { "CALLBACK" },
                });
                if let Some(a) = w.about.activity {
                    v["activityArn"] = json!(a);
                    v["workerStarted"] = json!(!queued.contains(&w.token));
                }
                v
            })
            .collect();
        Ok(json!({ "tasks": tasks }))
    }

    pub(crate) async fn send_task_heartbeat(&self, p: &Value) -> R {
        self.deliver(shoal_fleet::CallbackAnswer::Heartbeat {
            token: token(p)?.to_string(),
        })
        .await
    }
}
