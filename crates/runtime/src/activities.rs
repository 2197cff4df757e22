//! Activity tasks waiting for a worker: a Task whose Resource is an activity ARN puts
//! its token and input here, and GetActivityTask takes them out, oldest first. The
//! answer then comes through [`crate::callbacks::Callbacks`] like any other token.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// What GetActivityTask hands a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityTask {
    pub token: String,
    /// The task's input, as JSON text.
    pub input: String,
}

struct Queued {
    task: ActivityTask,
    /// Told the worker's name when a worker takes the task; closed once the task
    /// stopped waiting (it timed out, or the execution ended).
    started: oneshot::Sender<String>,
}

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Queued>,
    ready: Arc<Notify>,
}

/// A task waiting for a worker, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    pub activity: String,
    pub token: String,
}

/// The activity tasks of this process that no worker has taken yet.
#[derive(Default)]
pub struct Activities {
    queues: Mutex<HashMap<String, Queue>>,
}

impl Activities {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Queue>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a task for `activity`'s workers; the receiver hears the name of the
    /// worker that takes it.
    pub fn schedule(&self, activity: &str, task: ActivityTask) -> oneshot::Receiver<String> {
        let (tx, rx) = oneshot::channel();
        let mut queues = self.lock();
        let q = queues.entry(activity.to_string()).or_default();
        q.tasks.push_back(Queued { task, started: tx });
        q.ready.notify_one();
        rx
    }

    /// GetActivityTask: the oldest task of `activity`, waiting at most `wait` for one.
    /// `None` when none came in time.
    pub async fn poll(&self, activity: &str, worker: &str, wait: Duration) -> Option<ActivityTask> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let ready = {
                let mut queues = self.lock();
                let q = queues.entry(activity.to_string()).or_default();
                while let Some(queued) = q.tasks.pop_front() {
                    // A task whose execution stopped waiting is skipped.
                    if queued.started.send(worker.to_string()).is_ok() {
                        return Some(queued.task);
                    }
                }
                q.ready.clone()
            };
            let notified = ready.notified();
            tokio::pin!(notified);
            // Registered before the queue is looked at again, so a task scheduled in
            // between wakes this poll.
            notified.as_mut().enable();
            if self.has_live(activity) {
                continue;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    fn has_live(&self, activity: &str) -> bool {
        self.lock()
            .get(activity)
            .is_some_and(|q| q.tasks.iter().any(|t| !t.started.is_closed()))
    }

    /// Every task still waiting for a worker, oldest first per activity.
    pub fn scheduled(&self) -> Vec<Scheduled> {
        let queues = self.lock();
        let mut all: Vec<Scheduled> = queues
            .iter()
            .flat_map(|(a, q)| {
                q.tasks
                    .iter()
                    .filter(|t| !t.started.is_closed())
                    .map(|t| Scheduled {
                        activity: a.clone(),
                        token: t.task.token.clone(),
                    })
            })
            .collect();
        all.sort_by(|a, b| a.activity.cmp(&b.activity));
        all
    }

    /// Drops the tasks of a deleted activity; their executions keep waiting until
    /// their timeouts, as on AWS.
    pub fn forget(&self, activity: &str) {
        self.lock().remove(activity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(n: u32) -> ActivityTask {
        ActivityTask {
            token: format!("t{n}"),
            input: "{}".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_takes_the_oldest_live_task_and_names_its_worker() {
        let a = Activities::default();
        let gone = a.schedule("arn:act", task(1));
        drop(gone);
        let started = a.schedule("arn:act", task(2));
        let _later = a.schedule("arn:act", task(3));
        let got = a.poll("arn:act", "w1", Duration::from_secs(1)).await;
        assert_eq!(got, Some(task(2)));
        assert_eq!(started.await.unwrap(), "w1");
        assert_eq!(a.scheduled().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_waits_for_a_task_and_gives_up_at_its_deadline() {
        let a = Arc::new(Activities::default());
        let empty = tokio::time::Instant::now();
        assert_eq!(a.poll("arn:x", "w", Duration::from_secs(60)).await, None);
        assert_eq!(empty.elapsed(), Duration::from_secs(60));

        let poller = {
            let a = a.clone();
            tokio::spawn(async move { a.poll("arn:x", "w", Duration::from_secs(60)).await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        let _rx = a.schedule("arn:x", task(7));
        assert_eq!(poller.await.unwrap(), Some(task(7)));
    }
}
