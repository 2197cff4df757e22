//! A Task's `Resource`, parsed once into what it names. Every crate that routes or
//! describes a Task matches on [`Resource`]; none looks at the ARN text again.

use std::fmt;

/// How a Task waits for a service integration (the ARN's suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// No suffix: the call's response is the result.
    RequestResponse,
    /// `.sync`: run the job and wait for it to end.
    Sync,
    /// `.sync:2`: as `.sync`, with the output as JSON rather than a string.
    Sync2,
    /// `.waitForTaskToken`: wait for SendTaskSuccess or SendTaskFailure.
    WaitForTaskToken,
}

impl Pattern {
    pub fn suffix(self) -> &'static str {
        match self {
            Pattern::RequestResponse => "",
            Pattern::Sync => ".sync",
            Pattern::Sync2 => ".sync:2",
            Pattern::WaitForTaskToken => ".waitForTaskToken",
        }
    }

    /// Splits a pattern suffix off an action.
    fn split(action: &str) -> (&str, Pattern) {
        for p in [Pattern::Sync2, Pattern::Sync, Pattern::WaitForTaskToken] {
            if let Some(a) = action.strip_suffix(p.suffix()) {
                return (a, p);
            }
        }
        (action, Pattern::RequestResponse)
    }
}

/// What a Task state's `Resource` names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `arn:<partition>:states:::lambda:invoke[.waitForTaskToken]`.
    LambdaInvoke { partition: String, pattern: Pattern },
    /// A Lambda function's ARN, called directly: its payload is the effective input and
    /// its response the result.
    LambdaFunction { arn: String },
    /// `arn:<partition>:states:::http:invoke`.
    Http { partition: String },
    /// `arn:<partition>:states:<region>:<account>:activity:<name>`.
    Activity { arn: String },
    /// `arn:<partition>:states:::aws-sdk:<service>:<action>[.pattern]`.
    AwsSdk {
        partition: String,
        service: String,
        action: String,
        pattern: Pattern,
    },
    /// `arn:<partition>:states:::<service>:<action>[.pattern]`: an optimized integration
    /// (dynamodb, sqs, sns, events, states, batch, ...).
    Service {
        partition: String,
        service: String,
        action: String,
        pattern: Pattern,
    },
}

impl Resource {
    /// Stands in for a Resource that did not parse. The definition then has a
    /// diagnostic, so nothing ever runs it.
    pub(crate) fn invalid() -> Resource {
        Resource::Service {
            partition: "aws".into(),
            service: "invalid".into(),
            action: "invalid".into(),
            pattern: Pattern::RequestResponse,
        }
    }

    /// Parses a Resource ARN; `Err` says what is wrong with it.
    pub fn parse(text: &str) -> Result<Resource, String> {
        let not_arn = || format!("'{text}' is not a valid ARN");
        let mut parts = text.splitn(6, ':');
        let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(rest)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(not_arn());
        };
        if partition.is_empty()
            || !partition
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(not_arn());
        }
        let partition = partition.to_string();
        match service {
            "lambda" => {
                let mut f = rest.splitn(3, ':');
                let (Some("function"), Some(name), qualifier) = (f.next(), f.next(), f.next())
                else {
                    return Err(format!("'{text}' is not a Lambda function ARN"));
                };
                let name_ok = |s: &str| {
                    !s.is_empty()
                        && s.len() <= 64
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                };
                let qualifier_ok = |q: &str| {
                    q == "$LATEST"
                        || (!q.is_empty()
                            && q.len() <= 128
                            && q.chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                };
                if region.is_empty() || account.is_empty() || !name_ok(name) {
                    return Err(format!("'{text}' is not a valid Lambda function ARN"));
                }
                if let Some(q) = qualifier {
                    if !qualifier_ok(q) {
                        return Err(format!("'{text}' has an invalid function qualifier '{q}'"));
                    }
                }
                Ok(Resource::LambdaFunction {
                    arn: text.to_string(),
                })
            }
            "states" if region.is_empty() && account.is_empty() => {
                let (svc, action) = rest.split_once(':').ok_or_else(not_arn)?;
                let (action, pattern) = Pattern::split(action);
                if svc.is_empty() || action.is_empty() {
                    return Err(not_arn());
                }
                Ok(match (svc, action) {
                    ("lambda", "invoke") => Resource::LambdaInvoke { partition, pattern },
                    ("http", "invoke") if pattern == Pattern::RequestResponse => {
                        Resource::Http { partition }
                    }
                    ("aws-sdk", a) => {
                        let (service, action) = a.split_once(':').ok_or_else(|| {
                            format!("'{text}' names no action: use aws-sdk:<service>:<action>")
                        })?;
                        if service.is_empty() || action.is_empty() {
                            return Err(not_arn());
                        }
                        Resource::AwsSdk {
                            partition,
                            service: service.to_string(),
                            action: action.to_string(),
                            pattern,
                        }
                    }
                    _ => Resource::Service {
                        partition,
                        service: svc.to_string(),
                        action: action.to_string(),
                        pattern,
                    },
                })
            }
            "states" if rest.starts_with("activity:") && rest.len() > "activity:".len() => {
                Ok(Resource::Activity {
                    arn: text.to_string(),
                })
            }
            _ => Err(format!("'{text}' is not a resource a Task can run")),
        }
    }

    /// Why AWS does not recognise an optimized integration it has no such action or
    /// pattern for (DynamoDB has four actions, SQS, SNS and EventBridge one each);
    /// `None` for anything else, which may still fail at run time if shoal cannot run it.
    pub fn unrecognized(&self) -> Option<String> {
        let Resource::Service {
            service,
            action,
            pattern,
            ..
        } = self
        else {
            return None;
        };
        let (actions, patterns): (&[&str], &[Pattern]) = match service.as_str() {
            "dynamodb" => (
                &["getItem", "putItem", "updateItem", "deleteItem"],
                &[Pattern::RequestResponse],
            ),
            "sqs" => (
                &["sendMessage"],
                &[Pattern::RequestResponse, Pattern::WaitForTaskToken],
            ),
            "sns" => (
                &["publish"],
                &[Pattern::RequestResponse, Pattern::WaitForTaskToken],
            ),
            "events" => (
                &["putEvents"],
                &[Pattern::RequestResponse, Pattern::WaitForTaskToken],
            ),
            _ => return None,
        };
        (!actions.contains(&action.as_str()) || !patterns.contains(pattern)).then(|| {
            format!("The resource provided {self} is not recognized. The value is not a valid resource ARN, or the resource is not available in this region.")
        })
    }

    /// The integration pattern; direct function and activity calls have none.
    pub fn pattern(&self) -> Pattern {
        match self {
            Resource::LambdaInvoke { pattern, .. }
            | Resource::AwsSdk { pattern, .. }
            | Resource::Service { pattern, .. } => *pattern,
            Resource::LambdaFunction { .. } | Resource::Http { .. } | Resource::Activity { .. } => {
                Pattern::RequestResponse
            }
        }
    }

    /// The function a Task calls by a name known before it runs: a function ARN's, or
    /// none (lambda:invoke names it in its parameters).
    pub fn function_arn(&self) -> Option<&str> {
        match self {
            Resource::LambdaFunction { arn } => Some(arn),
            _ => None,
        }
    }
}

impl fmt::Display for Resource {
    /// The ARN as a definition writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::LambdaInvoke { partition, pattern } => {
                write!(
                    f,
                    "arn:{partition}:states:::lambda:invoke{}",
                    pattern.suffix()
                )
            }
            Resource::LambdaFunction { arn } | Resource::Activity { arn } => f.write_str(arn),
            Resource::Http { partition } => write!(f, "arn:{partition}:states:::http:invoke"),
            Resource::AwsSdk {
                partition,
                service,
                action,
                pattern,
            } => write!(
                f,
                "arn:{partition}:states:::aws-sdk:{service}:{action}{}",
                pattern.suffix()
            ),
            Resource::Service {
                partition,
                service,
                action,
                pattern,
            } => write!(
                f,
                "arn:{partition}:states:::{service}:{action}{}",
                pattern.suffix()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        for text in [
            "arn:aws:states:::lambda:invoke",
            "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "arn:aws:lambda:us-east-1:123456789012:function:f",
            "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST",
            "arn:aws:lambda:us-east-1:123456789012:function:f:live",
            "arn:aws:states:::http:invoke",
            "arn:aws:states:us-east-1:123456789012:activity:approve",
            "arn:aws:states:::aws-sdk:s3:getObject",
            "arn:aws:states:::aws-sdk:sfn:startExecution.waitForTaskToken",
            "arn:aws:states:::dynamodb:putItem",
            "arn:aws:states:::states:startExecution.sync:2",
            "arn:aws:states:::ecs:runTask.sync",
            "arn:aws-us-gov:states:::sqs:sendMessage.waitForTaskToken",
        ] {
            let r = Resource::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(r.to_string(), text);
        }
        assert_eq!(
            Resource::parse("arn:aws:states:::states:startExecution.sync:2")
                .unwrap()
                .pattern(),
            Pattern::Sync2
        );
    }

    #[test]
    fn bad_arns_are_refused() {
        for text in [
            "InvalidArn",
            "${lambdaArn",
            "arn:aws:lambda:us-east-1:123456789012:function:",
            "arn:aws:lambda:us-east-1:123456789012:function:f:",
            "arn:aws:lambda:us-east-1:123456789012:function:f:bad!",
            "arn:aws:states:::aws-sdk:s3",
            "arn:aws:states:::",
            "arn:aws:s3:::bucket",
        ] {
            assert!(Resource::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn only_the_optimized_actions_aws_has_are_recognized() {
        for ok in [
            "arn:aws:states:::dynamodb:putItem",
            "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "arn:aws:states:::events:putEvents",
            "arn:aws:states:::aws-sdk:dynamodb:scan",
            "arn:aws:states:::batch:submitJob.sync",
        ] {
            assert_eq!(Resource::parse(ok).unwrap().unrecognized(), None, "{ok}");
        }
        for bad in [
            "arn:aws:states:::dynamodb:scan",
            "arn:aws:states:::dynamodb:putItem.waitForTaskToken",
            "arn:aws:states:::sqs:receiveMessage",
        ] {
            assert!(
                Resource::parse(bad).unwrap().unrecognized().is_some(),
                "{bad}"
            );
        }
    }
}
