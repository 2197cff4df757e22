//! The function registry (`shoal.toml`) and the Task resources that call functions:
//! `arn:aws:states:::lambda:invoke` and plain function ARNs.

use crate::lambda::{Pool, Reply};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_expr::{errors, Failure};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One `[functions.<name>]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    /// The process to start: it speaks the Lambda Runtime API.
    #[serde(default)]
    pub command: Vec<String>,
    /// Or an in-process function shipped with shoal.
    pub builtin: Option<String>,
    /// Relative to the config file.
    #[serde(default)]
    pub cwd: PathBuf,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Lambda's default is 3 seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    #[serde(default = "default_memory")]
    pub memory_mb: u64,
    /// The most processes at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_timeout() -> f64 {
    3.0
}
fn default_memory() -> u64 {
    128
}
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    functions: BTreeMap<String, FunctionConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Functions shipped inside shoal, run in-process.
#[derive(Debug, Clone, Copy)]
enum Builtin {
    /// Returns its payload: for tests, and as the cheapest possible function.
    Identity,
    Noop,
    /// The seed demo's function (`functions/resize`), reading and writing the buckets directly.
    Resize,
}

fn builtin(name: &str) -> Option<Builtin> {
    match name {
        "identity" => Some(Builtin::Identity),
        "noop" => Some(Builtin::Noop),
        "resize" => Some(Builtin::Resize),
        _ => None,
    }
}

enum Function {
    Builtin(Builtin),
    Process(Arc<Pool>),
}

/// Every registered function, by name.
#[derive(Default)]
pub struct Functions {
    by_name: HashMap<String, Function>,
    /// The buckets builtins read and write.
    store: std::sync::OnceLock<Arc<crate::Store>>,
    resize: std::sync::OnceLock<Arc<shoal_resize::Workers>>,
}

/// The resize builtin's view of the buckets, on one of its worker threads. Local files
/// are read and written right there; S3 requests run on shoal's runtime, whose clients
/// they share.
struct StoreObjects {
    store: Arc<crate::Store>,
    runtime: tokio::runtime::Handle,
}

impl StoreObjects {
    /// Runs a store call on shoal's runtime, where the store's S3 connections live.
    async fn on_shoal<T: Send + 'static>(
        &self,
        call: impl std::future::Future<Output = crate::Result<T>> + Send + 'static,
    ) -> Result<T, String> {
        match self.runtime.spawn(call).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl shoal_resize::Objects for StoreObjects {
    fn get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> futures::future::LocalBoxFuture<'a, Result<bytes::Bytes, String>> {
        Box::pin(async move {
            match &*self.store {
                crate::Store::Local(l) => l
                    .get(bucket, key)
                    .map(Into::into)
                    .map_err(|e| e.to_string()),
                _ => {
                    let (store, b, k) = (self.store.clone(), bucket.to_string(), key.to_string());
                    self.on_shoal(async move { store.get(&b, &k).await })
                        .await
                        .map(Into::into)
                }
            }
        })
    }
    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
    ) -> futures::future::LocalBoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match &*self.store {
                crate::Store::Local(l) => l.put(bucket, key, &body).map_err(|e| e.to_string()),
                _ => {
                    let (store, b, k) = (self.store.clone(), bucket.to_string(), key.to_string());
                    self.on_shoal(async move { store.put(&b, &k, body).await })
                        .await
                }
            }
        })
    }
}

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";

impl Functions {
    /// Reads a `shoal.toml`. Call within a tokio runtime.
    pub fn load(path: &Path) -> Result<Functions, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let file: ConfigFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        // `shoal.toml` alone has an empty parent, which as a working folder fails to spawn.
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut by_name = HashMap::new();
        for (name, mut cfg) in file.functions {
            let ok_name = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok_name {
                return Err(invalid(format!(
                    "functions.{name}: a function name is 1 to 64 letters, digits, '-' or '_'"
                )));
            }
            let f = match (&cfg.builtin, cfg.command.is_empty()) {
                (Some(b), true) => Function::Builtin(builtin(b).ok_or_else(|| {
                    invalid(format!(
                        "functions.{name}: unknown builtin {b:?} (there are: identity, noop, resize)"
                    ))
                })?),
                (None, false) => {
                    let cwd = base.join(&cfg.cwd);
                    cfg.cwd = std::path::absolute(&cwd).unwrap_or(cwd);
                    // A relative program path ("./bootstrap") is relative to cwd, as in Lambda.
                    if cfg.command[0].contains('/') && Path::new(&cfg.command[0]).is_relative() {
                        cfg.command[0] = cfg.cwd.join(&cfg.command[0]).to_string_lossy().into_owned();
                    }
                    Function::Process(Pool::new(&name, cfg))
                }
                _ => {
                    return Err(invalid(format!(
                        "functions.{name}: give exactly one of command or builtin"
                    )))
                }
            };
            by_name.insert(name, f);
        }
        Ok(Functions {
            by_name,
            ..Functions::default()
        })
    }

    /// The buckets that builtins use.
    pub fn attach_store(&self, store: Arc<crate::Store>) {
        let _ = self.store.set(store);
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

    /// For each process-backed function that ran: (name, invocations, processes
    /// started, most processes alive at once).
    pub fn stats(&self) -> Vec<(String, usize, usize, usize)> {
        let mut out: Vec<_> = self
            .by_name
            .iter()
            .filter_map(|(n, f)| match f {
                Function::Process(p) => {
                    let (i, s, m) = p.stats();
                    (i > 0).then(|| (n.clone(), i, s, m))
                }
                Function::Builtin(_) => None,
            })
            .collect();
        out.sort();
        out
    }

    /// The registered functions' names.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }

    /// Whether this Task resource is one of ours.
    pub fn handles(resource: &str) -> bool {
        resource.starts_with("arn:aws:states:::lambda:invoke")
            || resource.starts_with("arn:aws:lambda:")
            || resource == "arn:aws:states:::http:invoke"
    }

    /// Runs a Task whose resource calls a function; `input` is the Task's effective
    /// Parameters/Arguments.
    pub async fn invoke_task(
        &self,
        resource: &str,
        input: Value,
        task_timeout: Option<Duration>,
        request_id: String,
    ) -> Result<Value, Failure> {
        if resource == "arn:aws:states:::http:invoke" {
            return crate::http::invoke(&input, task_timeout).await;
        }
        if resource == "arn:aws:states:::lambda:invoke" {
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
            let body = self
                .call(name, payload, task_timeout, &request_id, true)
                .await?;
            if body.len() > crate::PAYLOAD_LIMIT {
                return Err(too_large("lambda"));
            }
            return Ok(invoke_result(&body, &request_id));
        }
        if resource.starts_with("arn:aws:states:::lambda:invoke.") {
            return Err(Failure::runtime(format!(
                "The resource '{resource}' is not supported by shoal yet (callback patterns such as .waitForTaskToken are out of scope)"
            )));
        }
        let payload = Bytes::from(shoal_expr::compact(&input));
        let body = self
            .call(resource, payload, task_timeout, &request_id, false)
            .await?;
        if body.len() > crate::PAYLOAD_LIMIT {
            return Err(too_large(resource));
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
        match self.call(name, payload, None, request_id, false).await {
            Ok(body) => Ok((body, None)),
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
                    format!("Function not found: arn:aws:lambda:{REGION}:{ACCOUNT}:function:{short} (Service: AWSLambda; Status Code: 404; Error Code: ResourceNotFoundException; Request ID: {request_id}; Proxy: null)"),
                )
            })
    }

    async fn call(
        &self,
        name: &str,
        payload: Bytes,
        task_timeout: Option<Duration>,
        request_id: &str,
        compact_cause: bool,
    ) -> Result<Bytes, Failure> {
        let (_, f) = self.find(name, request_id)?;
        let reply = match f {
            Function::Builtin(Builtin::Identity) => Reply::Ok(payload),
            Function::Builtin(Builtin::Noop) => Reply::Ok(Bytes::from_static(b"null")),
            Function::Builtin(Builtin::Resize) => self.resize(&payload).await,
            Function::Process(p) => {
                p.invoke(request_id.to_string(), payload, task_timeout)
                    .await
            }
        };
        match reply {
            Reply::Ok(body) => Ok(body),
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

impl Functions {
    async fn resize(&self, payload: &[u8]) -> Reply {
        let Some(store) = self.store.get() else {
            return Reply::Unknown("the resize builtin has no buckets".into());
        };
        let event: Value = match serde_json::from_slice(payload) {
            Ok(v) => v,
            Err(e) => return Reply::Unknown(format!("the payload is not JSON: {e}")),
        };
        let workers = match self.resize.get() {
            Some(w) => w.clone(),
            None => {
                let (store, runtime) = (store.clone(), tokio::runtime::Handle::current());
                let started = shoal_resize::Workers::start(shoal_resize::cpu_slots(), move || {
                    Box::new(StoreObjects {
                        store: store.clone(),
                        runtime: runtime.clone(),
                    })
                });
                match started {
                    Ok(w) => self.resize.get_or_init(|| Arc::new(w)).clone(),
                    Err(e) => {
                        return Reply::Unknown(format!("the resize builtin cannot start: {e}"))
                    }
                }
            }
        };
        match workers.run_batch(event, false).await {
            Ok(v) => Reply::Ok(Bytes::from(v.to_string())),
            Err(shoal_resize::BatchFailed(v)) => {
                let error_type = "Resize.BatchFailed".to_string();
                let body = json!({"errorMessage": format!("more than half the batch failed: {v}"), "errorType": error_type});
                Reply::HandlerError {
                    error_type,
                    body: Bytes::from(body.to_string()),
                }
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
        let f = Functions::load(&cfg).unwrap();
        let r = f
            .invoke_task(
                "arn:aws:states:::lambda:invoke",
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
            .invoke_task(
                "arn:aws:lambda:us-east-1:1:function:echo",
                json!([1]),
                None,
                "r".into(),
            )
            .await
            .unwrap();
        assert_eq!(plain, json!([1]));
        let missing = f
            .invoke_task(
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
        assert!(Functions::load(&cfg).is_err());
    }
}
