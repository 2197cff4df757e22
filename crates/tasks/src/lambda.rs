//! The Task resources that call functions, `arn:aws:states:::lambda:invoke` and plain
//! function ARNs, with Lambda's result and error shapes; and Lambda's Invoke API over
//! the same functions.

use crate::builtin::{Builtin, Builtins};
use bytes::Bytes;
use serde_json::{json, Value};
use shoal_asl::identity::{self, PAYLOAD_LIMIT};
use shoal_buckets::Buckets;
use shoal_expr::{errors, Failure};
use shoal_lambda::{ConfigError, FunctionDef, Pool, Registry, Reply};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

enum Function {
    Builtin(Arc<dyn Builtin>),
    Process(Arc<Pool>),
}

/// How much a process-backed function was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionStats {
    pub name: String,
    pub invocations: usize,
    /// Processes started.
    pub started: usize,
    /// The most processes alive at once.
    pub peak: usize,
}

/// Every registered function, by name.
#[derive(Default)]
pub struct Functions {
    by_name: HashMap<String, Function>,
    /// The buckets builtins read and write.
    buckets: std::sync::OnceLock<Arc<Buckets>>,
    /// `[services.<name>] endpoint` from the same shoal.toml.
    services: shoal_aws::Endpoints,
}

impl Functions {
    /// Starts nothing yet: a function's processes start on its first invocation.
    /// Call within a tokio runtime.
    pub fn new(registry: Registry, builtins: &Builtins) -> Result<Functions, ConfigError> {
        let mut by_name = HashMap::new();
        let path = registry.path.clone();
        for (name, def) in registry.functions {
            let f = match def {
                FunctionDef::Builtin(b) => match builtins.get(&b) {
                    Some(f) => Function::Builtin(f.clone()),
                    None => {
                        let known: Vec<&str> = builtins.keys().map(String::as_str).collect();
                        return Err(ConfigError::Invalid {
                            path: path.display().to_string(),
                            message: format!(
                                "functions.{name}: unknown builtin {b:?} (this shoal has: {}){}",
                                known.join(", "),
                                if b == "resize" {
                                    "; the resize builtin is in builds with `--features resize`"
                                } else {
                                    ""
                                }
                            ),
                        });
                    }
                },
                FunctionDef::Process(cfg) => Function::Process(Pool::new(&name, cfg)),
            };
            by_name.insert(name, f);
        }
        Ok(Functions {
            by_name,
            services: registry.services.into_iter().collect(),
            ..Functions::default()
        })
    }

    /// Reads a `shoal.toml` with the standard builtins.
    pub fn load(path: &Path, builtins: &Builtins) -> Result<Functions, ConfigError> {
        Functions::new(Registry::load(path)?, builtins)
    }

    /// `[services.<name>] endpoint` from shoal.toml, for the AWS integrations.
    pub fn service_endpoints(&self) -> shoal_aws::Endpoints {
        self.services.clone()
    }

    /// The buckets attached, if any: builtins use them, and `aws-sdk:s3` over folders.
    pub fn buckets(&self) -> Option<&Arc<Buckets>> {
        self.buckets.get()
    }

    /// The buckets that builtins use.
    pub fn attach_buckets(&self, buckets: Arc<Buckets>) {
        let _ = self.buckets.set(buckets);
    }

    /// Whether any function runs as a process (and so may need an S3 endpoint).
    pub fn has_processes(&self) -> bool {
        self.by_name
            .values()
            .any(|f| matches!(f, Function::Process(_)))
    }

    /// Sets an environment variable for every function process started from now on.
    pub fn add_env(&self, key: &str, value: &str) {
        for f in self.by_name.values() {
            if let Function::Process(p) = f {
                p.add_env(key, value);
            }
        }
    }

    /// Each process-backed function that ran, by name.
    pub fn stats(&self) -> Vec<FunctionStats> {
        let mut out: Vec<_> = self
            .by_name
            .iter()
            .filter_map(|(n, f)| match f {
                Function::Process(p) => {
                    let s = p.stats();
                    (s.invocations > 0).then(|| FunctionStats {
                        name: n.clone(),
                        invocations: s.invocations,
                        started: s.started,
                        peak: s.peak,
                    })
                }
                Function::Builtin(_) => None,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The registered functions' names.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }

    /// `arn:aws:states:::lambda:invoke`: `input` is the Task's effective
    /// Parameters/Arguments (FunctionName, Payload, InvocationType).
    pub async fn lambda_invoke(
        &self,
        input: Value,
        task_timeout: Option<Duration>,
        request_id: String,
    ) -> Result<Value, Failure> {
        let name = input
            .get("FunctionName")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Failure::new(
                    errors::RUNTIME,
                    "lambda:invoke needs a string FunctionName in its Parameters",
                )
            })?;
        let payload = match input.get("Payload") {
            None | Some(Value::Null) => Bytes::from_static(b"{}"),
            // A string payload is the request body itself.
            Some(Value::String(s)) => Bytes::from(s.clone()),
            Some(v) => Bytes::from(shoal_expr::compact(v)),
        };
        if input.get("InvocationType").and_then(Value::as_str) == Some("DryRun") {
            self.find(name, &request_id)?;
            return Ok(json!({"Payload": "", "StatusCode": 204}));
        }
        // LogType Tail: the invocation's log comes back base64-encoded in LogResult.
        let tail = input.get("LogType").and_then(Value::as_str) == Some("Tail");
        let (body, log) = self
            .call(name, payload, task_timeout, &request_id, (true, tail))
            .await?;
        if body.len() > PAYLOAD_LIMIT {
            return Err(too_large("lambda"));
        }
        let mut result = invoke_result(&body, &request_id);
        if let Some(log) = log {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(log);
            result["SdkHttpMetadata"]["HttpHeaders"]["X-Amz-Log-Result"] = json!(encoded);
            result["SdkHttpMetadata"]["AllHttpHeaders"]["X-Amz-Log-Result"] = json!([encoded]);
            result["LogResult"] = json!(encoded);
            sort_keys(&mut result, str::to_string);
            // The SDK's header maps ignore case.
            sort_keys(
                &mut result["SdkHttpMetadata"]["HttpHeaders"],
                str::to_lowercase,
            );
            sort_keys(
                &mut result["SdkHttpMetadata"]["AllHttpHeaders"],
                str::to_lowercase,
            );
        }
        Ok(result)
    }

    /// A Task whose Resource is a function's ARN: the input is the payload, and the
    /// function's response is the result.
    pub async fn invoke_arn(
        &self,
        arn: &str,
        input: Value,
        task_timeout: Option<Duration>,
        request_id: String,
    ) -> Result<Value, Failure> {
        let payload = Bytes::from(shoal_expr::compact(&input));
        let (body, _) = self
            .call(arn, payload, task_timeout, &request_id, (false, false))
            .await?;
        if body.len() > PAYLOAD_LIMIT {
            return Err(too_large(arn));
        }
        Ok(parse_payload(&body))
    }

    /// Lambda's Invoke API (`POST /2015-03-31/functions/{name}/invocations`), so that a
    /// function's own SDK can call a sibling: the response body, or the error body with
    /// `X-Amz-Function-Error: Unhandled`, as Lambda answers. `Err` is a missing function.
    pub async fn invoke_api(
        &self,
        name: &str,
        payload: Bytes,
        request_id: &str,
    ) -> Result<(Bytes, Option<&'static str>), Failure> {
        self.find(name, request_id)?;
        match self
            .call(name, payload, None, request_id, (false, false))
            .await
        {
            Ok((body, _)) => Ok((body, None)),
            Err(f) if f.error == "Lambda.ResourceNotFoundException" => Err(f),
            Err(f) => {
                // A handler's own error body is its cause; anything else gets Lambda's shape.
                let body = match f.cause.as_deref().map(serde_json::from_str::<Value>) {
                    Some(Ok(v @ Value::Object(_))) => v.to_string(),
                    _ => json!({"errorType": f.error, "errorMessage": f.cause.unwrap_or_default()})
                        .to_string(),
                };
                Ok((Bytes::from(body), Some("Unhandled")))
            }
        }
    }

    /// Whether `name` resolves to a registered function (Lambda's not-found failure if not).
    pub fn invoke_api_check(&self, name: &str, request_id: &str) -> Result<(), Failure> {
        self.find(name, request_id).map(|_| ())
    }

    fn find(&self, name: &str, request_id: &str) -> Result<(&str, &Function), Failure> {
        let short = function_name(name);
        self.by_name
            .get_key_value(short)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| {
                Failure::new(
                    "Lambda.ResourceNotFoundException",
                    format!("Function not found: {} (Service: AWSLambda; Status Code: 404; Error Code: ResourceNotFoundException; Request ID: {request_id}; Proxy: null)", identity::function_arn(short)),
                )
            })
    }

    async fn call(
        &self,
        name: &str,
        payload: Bytes,
        task_timeout: Option<Duration>,
        request_id: &str,
        (compact_cause, tail): (bool, bool),
    ) -> Result<(Bytes, Option<String>), Failure> {
        let (_, f) = self.find(name, request_id)?;
        let (reply, log) = match f {
            Function::Builtin(b) => (b.invoke(payload, self.buckets.get()).await, None),
            Function::Process(p) if tail => {
                let (r, log) = p
                    .invoke_tail(request_id.to_string(), payload, task_timeout)
                    .await;
                (r, Some(log))
            }
            Function::Process(p) => (
                p.invoke(request_id.to_string(), payload, task_timeout)
                    .await,
                None,
            ),
        };
        // A builtin writes no log of its own: Lambda's lines alone.
        let log = log.or_else(|| {
            tail.then(|| {
                format!("START RequestId: {request_id} Version: $LATEST\nEND RequestId: {request_id}\nREPORT RequestId: {request_id}\tDuration: 0.00 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: 128 MB\t\n")
            })
        });
        match reply {
            Reply::Ok(body) => Ok((body, log)),
            // AWS records an empty cause here, not none.
            Reply::TaskTimeout => Err(Failure::new(errors::TIMEOUT, "")),
            Reply::Unknown(message) => Err(Failure::new(
                "Lambda.Unknown",
                format!("The cause could not be determined because Lambda did not return an error type. Returned payload: {}", json!({"errorMessage": message})),
            )),
            Reply::HandlerError { error_type, body } => {
                // lambda:invoke re-serializes the error body; the plain ARN passes it as sent.
                let cause = match serde_json::from_slice::<Value>(&body) {
                    Ok(v) if compact_cause => v.to_string(),
                    _ => String::from_utf8_lossy(&body).into_owned(),
                };
                Err(Failure::new(error_type, cause))
            }
        }
    }
}

fn too_large(what: &str) -> Failure {
    Failure::new(
        errors::DATA_LIMIT_EXCEEDED,
        format!("The state/task '{what}' returned a result with a size exceeding the maximum number of bytes service limit."),
    )
}

/// `name`, `name:qualifier`, `123456789012:function:name`, or a full function ARN.
pub fn function_name(s: &str) -> &str {
    let rest = match s.find("function:") {
        Some(i) => &s[i + "function:".len()..],
        None => s,
    };
    rest.split(':').next().unwrap_or(rest)
}

fn parse_payload(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// An object's keys in the order the Java SDK writes them: sorted by `key`.
fn sort_keys(v: &mut Value, key: impl Fn(&str) -> String) {
    if let Value::Object(m) = v {
        let mut all: Vec<(String, Value)> = std::mem::take(m).into_iter().collect();
        all.sort_by_key(|(k, _)| key(k));
        m.extend(all);
    }
}

/// lambda:invoke's result: the payload with the Invoke API's response metadata.
fn invoke_result(body: &[u8], request_id: &str) -> Value {
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let trace = format!(
        "Root=1-{:08x}-{};Sampled=0",
        chrono::Utc::now().timestamp(),
        &request_id.replace('-', "")[..24.min(request_id.replace('-', "").len())]
    );
    let len = body.len().to_string();
    let headers = json!({
        "Connection": "keep-alive",
        "Content-Length": len,
        "Content-Type": "application/json",
        "Date": date,
        "X-Amz-Executed-Version": "$LATEST",
        "x-amzn-Remapped-Content-Length": "0",
        "x-amzn-RequestId": request_id,
        "X-Amzn-Trace-Id": trace,
    });
    let all: serde_json::Map<String, Value> = headers
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), json!([v])))
        .collect();
    json!({
        "ExecutedVersion": "$LATEST",
        "Payload": parse_payload(body),
        "SdkHttpMetadata": {"AllHttpHeaders": all, "HttpHeaders": headers, "HttpStatusCode": 200},
        "SdkResponseMetadata": {"RequestId": request_id},
        "StatusCode": 200,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_like_aws() {
        for s in [
            "resize",
            "resize:live",
            "123456789012:function:resize",
            "arn:aws:lambda:us-east-1:123456789012:function:resize",
            "arn:aws:lambda:us-east-1:123456789012:function:resize:$LATEST",
        ] {
            assert_eq!(function_name(s), "resize", "{s}");
        }
    }

    #[tokio::test]
    async fn builtins_and_result_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("shoal.toml");
        std::fs::write(&cfg, "[functions.echo]\nbuiltin = \"identity\"\n").unwrap();
        let f = Functions::load(&cfg, &crate::builtin::standard()).unwrap();
        let r = f
            .lambda_invoke(
                json!({"FunctionName": "arn:aws:lambda:us-east-1:1:function:echo", "Payload": {"a": 1}}),
                None,
                "11111111-2222-4333-8444-555555555555".into(),
            )
            .await
            .unwrap();
        assert_eq!(r["Payload"], json!({"a": 1}));
        assert_eq!(r["StatusCode"], 200);
        assert_eq!(r["SdkHttpMetadata"]["HttpHeaders"]["Content-Length"], "7");
        assert_eq!(
            r["SdkHttpMetadata"]["AllHttpHeaders"]["Content-Length"],
            json!(["7"])
        );
        let plain = f
            .invoke_arn(
                "arn:aws:lambda:us-east-1:1:function:echo",
                json!([1]),
                None,
                "r".into(),
            )
            .await
            .unwrap();
        assert_eq!(plain, json!([1]));
        let missing = f
            .invoke_arn(
                "arn:aws:lambda:us-east-1:1:function:nope",
                json!({}),
                None,
                "r".into(),
            )
            .await
            .unwrap_err();
        assert_eq!(missing.error, "Lambda.ResourceNotFoundException");
        assert!(missing.cause.unwrap().contains("function:nope"));
        std::fs::write(
            &cfg,
            "[functions.x]\nbuiltin = \"identity\"\ncommand = [\"a\"]\n",
        )
        .unwrap();
        assert!(Functions::load(&cfg, &crate::builtin::standard()).is_err());
        std::fs::write(&cfg, "[functions.x]\nbuiltin = \"resize\"\n").unwrap();
        let e = Functions::load(&cfg, &crate::builtin::standard())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--features resize"), "{e}");
    }
}
