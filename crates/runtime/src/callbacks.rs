//! Tasks that wait for a callback (`.waitForTaskToken`): the tokens waiting in this
//! process, and SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat reaching them.
//! A token is made by the engine from the execution's entropy, so after a restart the
//! replayed execution waits on the same token again.

use serde_json::Value;
use shoal_asl::identity::TaskToken;
use shoal_expr::Failure;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// How a waiting task is answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Success(Value),
    Failure(Failure),
}

/// Why a callback was refused, with AWS's error codes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallbackError {
    /// Not a token shoal made.
    #[error("Invalid Token: '{0}'")]
    InvalidToken(String),
    /// A well-formed token no task waits on (ended, or never existed).
    #[error("Task Does Not Exist")]
    TaskDoesNotExist,
    /// The task already ended by its TimeoutSeconds or HeartbeatSeconds.
    #[error("Task Timed Out: '{0}'")]
    TaskTimedOut(String),
}

impl CallbackError {
    /// AWS's error code.
    pub fn code(&self) -> &'static str {
        match self {
            CallbackError::InvalidToken(_) => "InvalidToken",
            CallbackError::TaskDoesNotExist => "TaskDoesNotExist",
            CallbackError::TaskTimedOut(_) => "TaskTimedOut",
        }
    }
}

struct Waiter {
    answer: oneshot::Sender<Answer>,
    beat: Arc<Notify>,
    about: Option<About>,
}

/// What a waiting task is, for whoever lists them (the dashboard).
#[derive(Debug, Clone, PartialEq)]
pub struct About {
    pub state: String,
    /// The activity whose worker the task waits for; none for `.waitForTaskToken`.
    pub activity: Option<String>,
    pub since_ms: i64,
}

/// A task waiting for its token.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub token: String,
    pub execution_arn: String,
    pub about: About,
}

/// Tokens that timed out are remembered this long (in count), for `TaskTimedOut`.
const REMEMBERED: usize = 10_000;

#[derive(Default)]
struct Inner {
    waiting: HashMap<String, Waiter>,
    timed_out: VecDeque<String>,
}

/// The tasks of this process that wait for a token.
#[derive(Default)]
pub struct Callbacks {
    inner: Mutex<Inner>,
}

/// A task's side of a registered token.
pub struct Registration {
    answer: oneshot::Receiver<Answer>,
    beat: Arc<Notify>,
}

/// Why a wait ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    Timeout,
    Heartbeat,
}

impl Expired {
    pub fn failure(self) -> Failure {
        match self {
            Expired::Timeout => Failure {
                error: "States.Timeout".into(),
                cause: None,
            },
            Expired::Heartbeat => Failure {
                error: "States.HeartbeatTimeout".into(),
                cause: None,
            },
        }
    }
}

impl Callbacks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts waiting on `token`; a second registration of the same token (a replay)
    /// replaces the first.
    pub fn register(&self, token: &str) -> Registration {
        self.register_as(token, None)
    }

    /// [`Callbacks::register`], saying what the task is.
    pub fn register_as(&self, token: &str, about: Option<About>) -> Registration {
        let (tx, rx) = oneshot::channel();
        let beat = Arc::new(Notify::new());
        self.lock().waiting.insert(
            token.to_string(),
            Waiter {
                answer: tx,
                beat: beat.clone(),
                about,
            },
        );
        Registration { answer: rx, beat }
    }

    /// The task stopped waiting (its call failed, or it timed out).
    pub fn forget(&self, token: &str, expired: bool) {
        let mut inner = self.lock();
        inner.waiting.remove(token);
        if expired {
            inner.timed_out.push_back(token.to_string());
            if inner.timed_out.len() > REMEMBERED {
                inner.timed_out.pop_front();
            }
        }
    }

    fn missing(inner: &Inner, token: &str) -> CallbackError {
        if TaskToken::decode(token).is_none() {
            CallbackError::InvalidToken(token.to_string())
        } else if inner.timed_out.iter().any(|t| t == token) {
            CallbackError::TaskTimedOut(token.to_string())
        } else {
            CallbackError::TaskDoesNotExist
        }
    }

    /// SendTaskSuccess or SendTaskFailure.
    pub fn answer(&self, token: &str, answer: Answer) -> Result<(), CallbackError> {
        let mut inner = self.lock();
        match inner.waiting.remove(token) {
            // A task that stopped listening a moment ago is as good as gone.
            Some(w) => w
                .answer
                .send(answer)
                .map_err(|_| CallbackError::TaskDoesNotExist),
            None => Err(Self::missing(&inner, token)),
        }
    }

    /// SendTaskHeartbeat.
    pub fn heartbeat(&self, token: &str) -> Result<(), CallbackError> {
        let inner = self.lock();
        match inner.waiting.get(token) {
            Some(w) => {
                w.beat.notify_one();
                Ok(())
            }
            None => Err(Self::missing(&inner, token)),
        }
    }

    /// The tokens waiting now, for a dashboard or a CLI.
    pub fn waiting(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().waiting.keys().cloned().collect();
        v.sort();
        v
    }
}

impl Callbacks {
    /// The waiting tasks that said what they are, oldest first.
    pub fn waiting_tasks(&self) -> Vec<Waiting> {
        let inner = self.lock();
        let mut all: Vec<Waiting> = inner
            .waiting
            .iter()
            .filter(|(_, w)| !w.answer.is_closed())
            .filter_map(|(token, w)| {
                Some(Waiting {
                    token: token.clone(),
                    execution_arn: TaskToken::decode(token)?.execution_arn,
                    about: w.about.clone()?,
                })
            })
            .collect();
        all.sort_by(|a, b| (a.about.since_ms, &a.token).cmp(&(b.about.since_ms, &b.token)));
        all
    }
}

impl Registration {
    /// The answer, if one comes (before any timeout runs); `None` if the registration
    /// was replaced.
    pub async fn answered(&mut self) -> Option<Answer> {
        (&mut self.answer).await.ok()
    }

    /// Waits for the answer, at most `timeout` in all and `heartbeat` between beats.
    pub async fn wait(
        mut self,
        timeout: Option<Duration>,
        heartbeat: Option<Duration>,
    ) -> Result<Answer, Expired> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let beat_deadline = heartbeat.map(|h| tokio::time::Instant::now() + h);
            tokio::select! {
                a = &mut self.answer => {
                    // The sender is gone only if the registration was replaced.
                    return a.map_err(|_| Expired::Timeout);
                }
                _ = self.beat.notified() => continue,
                _ = sleep_until(deadline) => return Err(Expired::Timeout),
                _ = sleep_until(beat_deadline) => return Err(Expired::Heartbeat),
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(n: u64) -> String {
        TaskToken {
            execution_arn: shoal_asl::identity::execution_arn("m", "e"),
            effect: n,
            secret: 99,
        }
        .encode()
    }

    #[tokio::test]
    async fn an_answer_reaches_the_waiting_task_once() {
        let cb = Callbacks::default();
        let t = token(1);
        let reg = cb.register(&t);
        cb.answer(&t, Answer::Success(json!({"ok": true}))).unwrap();
        assert_eq!(
            reg.wait(None, None).await,
            Ok(Answer::Success(json!({"ok": true})))
        );
        assert_eq!(
            cb.answer(&t, Answer::Success(json!(1))),
            Err(CallbackError::TaskDoesNotExist)
        );
        assert!(matches!(
            cb.answer("garbage", Answer::Success(json!(1))),
            Err(CallbackError::InvalidToken(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_keep_a_task_alive_until_they_stop() {
        let cb = Arc::new(Callbacks::default());
        let t = token(2);
        let reg = cb.register(&t);
        let beats = {
            let (cb, t) = (cb.clone(), t.clone());
            tokio::spawn(async move {
                for _ in 0..3 {
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    cb.heartbeat(&t).unwrap();
                }
            })
        };
        let started = tokio::time::Instant::now();
        let r = reg.wait(None, Some(Duration::from_secs(5))).await;
        assert_eq!(r, Err(Expired::Heartbeat));
        // Three beats 4 s apart, then 5 s of silence.
        assert_eq!(started.elapsed(), Duration::from_secs(17));
        beats.await.unwrap();
        cb.forget(&t, true);
        assert!(matches!(
            cb.heartbeat(&t),
            Err(CallbackError::TaskTimedOut(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_ends_a_wait_that_nobody_answers() {
        let cb = Callbacks::default();
        let reg = cb.register(&token(3));
        assert_eq!(
            reg.wait(Some(Duration::from_secs(5)), None).await,
            Err(Expired::Timeout)
        );
    }
}
