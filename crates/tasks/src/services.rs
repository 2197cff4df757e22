//! AWS service integrations: the optimized ones (`dynamodb:putItem`, `sqs:sendMessage`,
//! `sns:publish`, `events:putEvents`, `states:startExecution`) and every
//! `aws-sdk:<service>:<action>`, through `shoal-aws`. This module only names things
//! as Step Functions does: the optimized integrations answer like the AWS SDK for
//! Java v1 (`DynamoDB.ResourceNotFoundException`, `SdkHttpMetadata`), `aws-sdk:*` like
//! the SDK for Java v2 (`DynamoDb.ResourceNotFoundException`).

use serde_json::{json, Map, Value};
use shoal_aws::{CallError, Client, Response, ServiceError};
use shoal_expr::{compact, Failure};
use std::time::Duration;

/// An optimized integration: which API it calls and how its answers are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Optimized {
    /// The model's service key.
    model: &'static str,
    /// The operation's name in the model.
    op: &'static str,
    /// The error prefix: `DynamoDB`, `SQS`, ...
    prefix: &'static str,
    /// The Java v1 client's service name in a cause (`AmazonDynamoDBv2`).
    service_name: &'static str,
    /// The Java v1 client's exception for an error the model does not name.
    base_exception: &'static str,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The response plus `SdkHttpMetadata` and `SdkResponseMetadata`.
    WithMetadata,
    /// EventBridge: `{Entries, FailedEntryCount}`, failing when an entry failed.
    PutEvents,
}

impl Optimized {
    /// The request-response integration an optimized ARN's service and action name;
    /// `None` for one shoal does not run.
    pub fn find(service: &str, action: &str) -> Option<Optimized> {
        let (model, op, prefix, service_name, base_exception, kind) = match (service, action) {
            ("dynamodb", "getItem") => (
                "dynamodb",
                "GetItem",
                "DynamoDB",
                "AmazonDynamoDBv2",
                "AmazonDynamoDBException",
                Kind::WithMetadata,
            ),
            ("dynamodb", "putItem") => (
                "dynamodb",
                "PutItem",
                "DynamoDB",
                "AmazonDynamoDBv2",
                "AmazonDynamoDBException",
                Kind::WithMetadata,
            ),
            ("dynamodb", "updateItem") => (
                "dynamodb",
                "UpdateItem",
                "DynamoDB",
                "AmazonDynamoDBv2",
                "AmazonDynamoDBException",
                Kind::WithMetadata,
            ),
            ("dynamodb", "deleteItem") => (
                "dynamodb",
                "DeleteItem",
                "DynamoDB",
                "AmazonDynamoDBv2",
                "AmazonDynamoDBException",
                Kind::WithMetadata,
            ),
            ("sqs", "sendMessage") => (
                "sqs",
                "SendMessage",
                "SQS",
                "AmazonSQS",
                "AmazonSQSException",
                Kind::WithMetadata,
            ),
            ("sns", "publish") => (
                "sns",
                "Publish",
                "SNS",
                "AmazonSNS",
                "AmazonSNSException",
                Kind::WithMetadata,
            ),
            ("events", "putEvents") => (
                "eventbridge",
                "PutEvents",
                "EventBridge",
                "AmazonEventBridge",
                "AmazonEventBridgeException",
                Kind::PutEvents,
            ),
            ("states", "startExecution") => (
                "sfn",
                "StartExecution",
                "StepFunctions",
                "AWSStepFunctions",
                "AWSStepFunctionsException",
                Kind::WithMetadata,
            ),
            _ => return None,
        };
        Some(Optimized {
            model,
            op,
            prefix,
            service_name,
            base_exception,
            kind,
        })
    }
}

impl Optimized {
    /// The resource ARN a definition names this integration by.
    fn resource(&self) -> String {
        let service = match self.model {
            "eventbridge" => "events",
            "sfn" => "states",
            m => m,
        };
        format!("arn:aws:states:::{service}:{}", lower_first(self.op))
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A Task's result is held to Step Functions' 256 KiB; the body's size says when the
/// result may be near it, so most results are never serialized to be measured.
fn within_limit(body_len: usize, out: Value, resource: &str) -> Result<Value, Failure> {
    let limit = shoal_asl::identity::PAYLOAD_LIMIT;
    if body_len > limit / 2 && compact(&out).len() > limit {
        return Err(Failure::new(
            "States.DataLimitExceeded",
            format!("The state/task '{resource}' returned a result with a size exceeding the maximum number of bytes service limit."),
        ));
    }
    Ok(out)
}

/// The Java v2 SDK's exception class for a modeled error shape.
fn java_exception(shape: &str) -> String {
    if let Some(base) = shape.strip_suffix("Fault") {
        format!("{base}Exception")
    } else if shape.ends_with("Exception") {
        shape.to_string()
    } else {
        format!("{shape}Exception")
    }
}

/// Calls AWS APIs for Task states.
#[derive(Clone, Default)]
pub struct Services {
    client: Client,
}

impl Services {
    pub fn new(endpoints: shoal_aws::Endpoints) -> Services {
        Services {
            client: Client::new(endpoints),
        }
    }

    /// `arn:aws:states:::aws-sdk:<service>:<action>`.
    pub async fn sdk(
        &self,
        service: &str,
        action: &str,
        input: &Value,
        timeout: Option<Duration>,
    ) -> Result<Value, Failure> {
        let prefix = shoal_aws::model::service(service)
            .map(|s| s.prefix.clone())
            .unwrap_or_else(|| shoal_aws::model::upper_first(service));
        match self.client.call(service, action, input, timeout).await {
            Ok(r) => within_limit(
                r.body_len,
                r.output,
                &format!("arn:aws:states:::aws-sdk:{service}:{action}"),
            ),
            Err(CallError::Service(e)) => {
                let name = match &e.shape {
                    Some(s) => java_exception(s),
                    None => format!("{prefix}Exception"),
                };
                let extended = match (&e.extended_request_id, service) {
                    (Some(x), "s3") => format!(", Extended Request ID: {x}"),
                    _ => String::new(),
                };
                Err(Failure::new(
                    format!("{prefix}.{name}"),
                    format!(
                        "{} (Service: {prefix}, Status Code: {}, Request ID: {}{extended})",
                        e.message, e.status, e.request_id
                    ),
                ))
            }
            Err(CallError::Client(message)) => Err(Failure::new(
                format!("{prefix}.SdkClientException"),
                message,
            )),
            Err(other) => Err(Failure::runtime(other.to_string())),
        }
    }

    /// A state machine's name and definition from the Step Functions endpoint
    /// (DescribeStateMachine), for a nested execution that runs here.
    pub async fn state_machine(&self, arn: &str) -> Result<(String, String), Failure> {
        let o = Optimized::find("states", "startExecution").expect("a known integration");
        let input = json!({ "StateMachineArn": arn });
        match self
            .client
            .call("sfn", "DescribeStateMachine", &input, None)
            .await
        {
            Ok(r) => {
                let text = |k: &str| r.output[k].as_str().unwrap_or_default().to_string();
                Ok((text("Name"), text("Definition")))
            }
            Err(CallError::Service(e)) => Err(v1_failure(o, &e)),
            Err(CallError::Client(message)) => Err(Failure::new(
                format!("{}.SdkClientException", o.prefix),
                message,
            )),
            Err(other) => Err(Failure::runtime(other.to_string())),
        }
    }

    /// An optimized integration, request-response.
    pub async fn optimized(
        &self,
        integration: Optimized,
        input: &Value,
        timeout: Option<Duration>,
        request_id: &str,
    ) -> Result<Value, Failure> {
        let o = integration;
        match self.client.call(o.model, o.op, input, timeout).await {
            Ok(r) => {
                let len = r.body_len;
                let out = match o.kind {
                    Kind::WithMetadata => with_metadata(o, r, request_id),
                    Kind::PutEvents => put_events(r.output)?,
                };
                within_limit(len, out, &o.resource())
            }
            Err(CallError::Service(e)) => Err(v1_failure(o, &e)),
            Err(CallError::Client(message)) => Err(Failure::new(
                format!("{}.SdkClientException", o.prefix),
                message,
            )),
            Err(other) => Err(Failure::runtime(other.to_string())),
        }
    }
}

fn v1_failure(o: Optimized, e: &ServiceError) -> Failure {
    let name = match &e.shape {
        Some(s) => java_exception(s),
        None => o.base_exception.to_string(),
    };
    Failure::new(
        format!("{}.{name}", o.prefix),
        format!(
            "{} (Service: {}; Status Code: {}; Error Code: {}; Request ID: {}; Proxy: null)",
            e.message, o.service_name, e.status, e.code, e.request_id
        ),
    )
}

fn put_events(output: Value) -> Result<Value, Failure> {
    let failed = output
        .get("FailedEntryCount")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let result = json!({
        "Entries": output.get("Entries").cloned().unwrap_or(json!([])),
        "FailedEntryCount": failed,
    });
    if failed > 0 {
        return Err(Failure::new("EventBridge.FailedEntry", compact(&result)));
    }
    Ok(result)
}

/// The response with the metadata the Java v1 SDK adds, headers as AWS sends them.
fn with_metadata(o: Optimized, r: Response, request_id: &str) -> Value {
    let rid = if r.request_id.is_empty() {
        request_id.to_string()
    } else {
        r.request_id.clone()
    };
    let svc = shoal_aws::model::service(o.model);
    let protocol = svc.as_ref().map(|s| s.protocol);
    // The length of the body AWS itself would send: compact JSON, or the query
    // protocol's indented XML.
    let (content_type, length) = match protocol {
        Some(shoal_aws::Protocol::Query) => {
            let svc = svc.as_ref().expect("a query service has a model");
            // AWS's request ids are UUIDs; another backend's (moto's have 52
            // characters) would change the length AWS reports.
            let uuid_like = if rid.len() == 36 { &rid } else { request_id };
            ("text/xml", query_body_len(svc, o.op, &r.output, uuid_like))
        }
        _ => {
            let wire: Value = serde_json::from_slice(&r.body).unwrap_or(json!({}));
            ("application/x-amz-json-1.0", compact(&wire).len())
        }
    };
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let mut headers: Vec<(&str, String)> = Vec::new();
    if o.model == "dynamodb" {
        let body = serde_json::from_slice::<Value>(&r.body)
            .map(|v| compact(&v))
            .unwrap_or_default();
        headers.push(("Server", "Server".into()));
        headers.push(("Connection", "keep-alive".into()));
        headers.push(("x-amzn-RequestId", rid.clone()));
        headers.push(("x-amz-crc32", crc32fast::hash(body.as_bytes()).to_string()));
    } else {
        headers.push(("x-amzn-RequestId", rid.clone()));
        headers.push(("connection", "keep-alive".into()));
    }
    headers.push(("Content-Length", length.to_string()));
    headers.push(("Date", date));
    headers.push(("Content-Type", content_type.into()));
    let all: Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!([v])))
        .collect();
    let single: Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let mut out = match r.output {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    out.insert(
        "SdkHttpMetadata".into(),
        json!({"AllHttpHeaders": all, "HttpHeaders": single, "HttpStatusCode": r.status}),
    );
    out.insert("SdkResponseMetadata".into(), json!({"RequestId": rid}));
    Value::Object(out)
}

/// The size of a query-protocol response as AWS writes it (two-space indents).
fn query_body_len(svc: &shoal_aws::Service, op: &str, output: &Value, rid: &str) -> usize {
    use shoal_aws::xml::Element;
    let Some(operation) = svc.ops.get(op) else {
        return 0;
    };
    let mut root = Element::new(&format!("{op}Response"));
    if let Some(ns) = &svc.xml_namespace {
        root.attrs.push(("xmlns".into(), ns.clone()));
    }
    if let (Some(shape), Some(wrapper)) = (&operation.output, &operation.wrapper) {
        shoal_aws::codec::to_xml(svc, shape, wrapper, output, &mut root);
    }
    let mut meta = Element::new("ResponseMetadata");
    meta.children
        .push(Element::leaf("RequestId", rid.to_string()));
    root.children.push(meta);
    let mut s = String::new();
    root.write(Some(0), &mut s);
    s.len() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_over_256_kib_is_a_data_limit_failure() {
        let big = json!({"Body": "x".repeat(300_000)});
        let f = within_limit(300_010, big, "arn:aws:states:::aws-sdk:s3:getObject").unwrap_err();
        assert_eq!(f.error, "States.DataLimitExceeded");
        assert!(within_limit(10, json!({"a": 1}), "r").is_ok());
        let o = Optimized::find("events", "putEvents").unwrap();
        assert_eq!(o.resource(), "arn:aws:states:::events:putEvents");
    }

    #[test]
    fn java_exception_names() {
        assert_eq!(java_exception("NoSuchKey"), "NoSuchKeyException");
        assert_eq!(
            java_exception("ResourceNotFoundException"),
            "ResourceNotFoundException"
        );
        assert_eq!(
            java_exception("InternalServerFault"),
            "InternalServerException"
        );
    }

    /// AWS's Publish response is 294 bytes with a 36-character message id and request
    /// id, as recorded on AWS.
    #[test]
    fn the_query_body_length_is_that_of_aws_xml() {
        let svc = shoal_aws::model::service("sns").unwrap();
        let id = "d9c6b3c4-6c47-5a8f-9b5e-2a3c4d5e6f70";
        let n = query_body_len(&svc, "Publish", &json!({"MessageId": id}), id);
        assert_eq!(n, 294);
    }
}
