//! Activities: CreateActivity, DescribeActivity, DeleteActivity, ListActivities and
//! GetActivityTask, the long poll through which workers take activity tasks.

use crate::api::{check_arn, check_name, opt_str, page, req_str, secs, validation, R};
use crate::machines::tags_of;
use crate::{ApiError, Server};
use serde_json::{json, Value};
use shoal_store::ActivityRecord;
use std::sync::Arc;
use std::time::Duration;

/// AWS's quota of activities per account and region.
const MAX_ACTIVITIES: usize = 10_000;
/// How long GetActivityTask holds a poll that finds no task.
const LONG_POLL: Duration = Duration::from_secs(60);
const MAX_WORKER_NAME: usize = 80;

fn does_not_exist(arn: &str) -> ApiError {
    ApiError::new(
        "ActivityDoesNotExist",
        format!("Activity Does Not Exist: '{arn}'"),
    )
}

fn activity_arn(p: &Value) -> R<&str> {
    let arn = req_str(p, "activityArn")?;
    if arn.len() > 256 {
        return Err(validation(
            "activityArn",
            "Member must have length less than or equal to 256",
        ));
    }
    check_arn(arn, "activity")
}

fn list_item(a: &ActivityRecord) -> Value {
    json!({"activityArn": a.arn, "name": a.name, "creationDate": secs(a.created_ms)})
}

impl Server {
    fn activity_row(&self, arn: &str) -> R<ActivityRecord> {
        self.db.activity(arn)?.ok_or_else(|| does_not_exist(arn))
    }

    pub(crate) fn create_activity(&self, p: &Value) -> R {
        let name = req_str(p, "name")?;
        check_name(name)?;
        let tags = tags_of(p, "tags")?;
        let arn = shoal_asl::identity::activity_arn(name);
        if self.db.activity(&arn)?.is_none() && self.db.activities()?.len() >= MAX_ACTIVITIES {
            return Err(ApiError::new(
                "ActivityLimitExceeded",
                format!(
                    "Activity Limit Exceeded: the account already has {MAX_ACTIVITIES} activities"
                ),
            ));
        }
        // Creating an activity that exists answers with the one that exists.
        let row = self.db.create_activity(&ActivityRecord {
            arn,
            name: name.to_string(),
            created_ms: self.runtime.now_ms(),
        })?;
        if !tags.is_empty() {
            self.db.tag(&row.arn, &tags)?;
        }
        Ok(json!({"activityArn": row.arn, "creationDate": secs(row.created_ms)}))
    }

    pub(crate) fn describe_activity(&self, p: &Value) -> R {
        let a = self.activity_row(activity_arn(p)?)?;
        let mut v = list_item(&a);
        v["encryptionConfiguration"] = json!({"type": "AWS_OWNED_KEY"});
        Ok(v)
    }

    pub(crate) fn delete_activity(&self, p: &Value) -> R {
        let arn = activity_arn(p)?;
        self.db.delete_activity(arn)?;
        self.runtime.activities().forget(arn);
        Ok(json!({}))
    }

    pub(crate) fn list_activities(&self, p: &Value) -> R {
        let all = self.db.activities()?;
        let (items, next) = page(all, p, 100)?;
        let mut v = json!({"activities": items.iter().map(list_item).collect::<Vec<_>>()});
        if let Some(t) = next {
            v["nextToken"] = json!(t);
        }
        Ok(v)
    }

    /// Waits up to 60 s for a task; without one, AWS answers with no token.
    pub(crate) async fn get_activity_task(self: &Arc<Self>, p: &Value) -> R {
        let arn = activity_arn(p)?;
        let worker = opt_str(p, "workerName")?.unwrap_or_default();
        if worker.chars().count() > MAX_WORKER_NAME {
            return Err(validation(
                "workerName",
                "Member must have length less than or equal to 80",
            ));
        }
        self.activity_row(arn)?;
        match self.runtime.activities().poll(arn, worker, LONG_POLL).await {
            Some(task) => Ok(json!({"taskToken": task.token, "input": task.input})),
            None => Ok(json!({})),
        }
    }
}
