//! Where a Task's resource is carried out: the one router from a parsed
//! [`Resource`] to the code that runs it. Functions (`lambda:invoke` and function
//! ARNs, with Lambda's result shapes), the HTTP Task, builtins, and the AWS service
//! integrations (optimized and `aws-sdk:*`) live here; callbacks, activities and nested
//! executions join them.

pub mod builtin;
pub mod http;
pub mod lambda;
pub mod local_s3;
pub mod mock;
pub mod services;

pub use builtin::{Builtin, Builtins};
pub use lambda::{FunctionStats, Functions};
pub use services::{Optimized, Services};

use serde_json::Value;
use shoal_asl::{Pattern, Resource};
use shoal_expr::Failure;
use std::time::Duration;

/// Every Task resource this shoal can run.
pub struct Tasks {
    functions: Functions,
    http: http::Client,
    services: Services,
}

impl Tasks {
    pub fn new(functions: Functions) -> Tasks {
        let services = Services::new(functions.service_endpoints());
        Tasks {
            functions,
            http: http::Client::default(),
            services,
        }
    }

    pub fn functions(&self) -> &Functions {
        &self.functions
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Whether [`Tasks::run`] can carry this resource's call out: request-response, or
    /// the call that hands a `.waitForTaskToken` task's token over (the runtime then
    /// waits for the answer). One that it cannot fails its Task at run time with
    /// [`Tasks::unsupported`], never at validation.
    pub fn handles(resource: &Resource) -> bool {
        let calls = matches!(
            resource.pattern(),
            Pattern::RequestResponse | Pattern::WaitForTaskToken
        );
        calls
            && match resource {
                Resource::LambdaInvoke { .. } | Resource::AwsSdk { .. } => true,
                Resource::LambdaFunction { .. } | Resource::Http { .. } => true,
                Resource::Service {
                    service, action, ..
                } => Optimized::find(service, action).is_some(),
                Resource::Activity { .. } => false,
            }
    }

    /// The Task failure for a resource this build cannot run.
    pub fn unsupported(resource: &Resource) -> Failure {
        Failure::runtime(format!("The resource '{resource}' is not supported by this shoal build: no function or integration is registered for it"))
    }

    /// Runs a Task's resource; `input` is the Task's effective Parameters/Arguments.
    /// Call it only for a resource [`Tasks::handles`].
    pub async fn run(
        &self,
        resource: &Resource,
        input: Value,
        timeout: Option<Duration>,
        request_id: String,
    ) -> Result<Value, Failure> {
        match resource {
            // `.waitForTaskToken` makes the same call; its answer comes later.
            Resource::LambdaInvoke { .. } => {
                self.functions
                    .lambda_invoke(input, timeout, request_id)
                    .await
            }
            Resource::LambdaFunction { arn } => {
                self.functions
                    .invoke_arn(arn, input, timeout, request_id)
                    .await
            }
            Resource::Http { .. } => self.http.invoke(&input, timeout).await,
            Resource::AwsSdk {
                service, action, ..
            } => match self.functions.buckets() {
                Some(b)
                    if service == "s3"
                        && local_s3::serves(action)
                        && matches!(**b, shoal_buckets::Buckets::Local(_)) =>
                {
                    local_s3::call(b, action, &input).await
                }
                _ => self.services.sdk(service, action, &input, timeout).await,
            },
            Resource::Service {
                service, action, ..
            } => match Optimized::find(service, action) {
                Some(o) => {
                    self.services
                        .optimized(o, &input, timeout, &request_id)
                        .await
                }
                None => Err(Tasks::unsupported(resource)),
            },
            other => Err(Tasks::unsupported(other)),
        }
    }
}
