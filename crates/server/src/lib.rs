//! `shoal serve`: the Step Functions API in AWS's JSON 1.0 protocol (`POST /` with
//! `X-Amz-Target: AWSStepFunctions.<Op>`), so the `aws` CLI and the SDKs work against
//! it, and a dashboard at `/` that reads the same API.
//!
//! Every request gets an answer in AWS's error shape (`{"__type", "message"}`, 4xx)
//! when it is wrong; [`Server::handle`] takes bytes and returns bytes, so it is fuzzed
//! without a socket.

mod activities;
mod api;
mod callbacks;
mod machines;
mod teststate;
pub use api::{describe_execution, history_events};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};
use shoal_runtime::Runtime;
use shoal_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Definitions are capped at 1 MiB and inputs at 256 KiB; a request holds one of
/// either, JSON-escaped, so twice the larger plus room for the rest.
pub const MAX_BODY: usize = 2 * 1024 * 1024 + 64 * 1024;

pub struct Options {
    pub runtime: Arc<Runtime>,
    /// The fleet whose workers `ListWorkers` shows, in fleet mode.
    pub fleet: Option<Arc<shoal_fleet::Fleet>>,
    pub db: Arc<dyn Store>,
    /// Required on every request when set (see [`Server::authorized`]).
    pub token: Option<String>,
    /// Step Functions Local's MockConfigFile: StartExecution on `<arn>#<TestCase>`
    /// runs with that test case's mocks.
    pub mocks: Option<Arc<shoal_tasks::mock::MockFile>>,
}

pub struct Server {
    runtime: Arc<Runtime>,
    fleet: Option<Arc<shoal_fleet::Fleet>>,
    db: Arc<dyn Store>,
    token: Option<String>,
    mocks: Option<Arc<shoal_tasks::mock::MockFile>>,
    /// Executions running in this process, so StopExecution can stop them.
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

/// An HTTP response: status, content type, body, extra headers.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    fn json(v: &Value) -> Response {
        Response {
            status: 200,
            content_type: "application/x-amz-json-1.0",
            body: v.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }
}

/// An API error: AWS's code (the SDKs raise it by name) and message.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code,
            message: message.into(),
        }
    }

    fn reply(&self) -> Response {
        Response {
            status: self.status,
            content_type: "application/x-amz-json-1.0",
            body: json!({"__type": self.code, "message": self.message})
                .to_string()
                .into_bytes(),
            headers: vec![("x-amzn-errortype", self.code.to_string())],
        }
    }
}

impl From<shoal_store::Error> for ApiError {
    fn from(e: shoal_store::Error) -> ApiError {
        match e {
            shoal_store::Error::ExecutionDoesNotExist(a) => ApiError::new(
                "ExecutionDoesNotExist",
                format!("Execution Does Not Exist: '{a}'"),
            ),
            shoal_store::Error::ExecutionAlreadyExists(a) => ApiError::new(
                "ExecutionAlreadyExists",
                format!("Execution Already Exists: '{a}'"),
            ),
            // The store failing is the server's fault, and says so.
            other => ApiError {
                status: 500,
                code: "InternalFailure",
                message: other.to_string(),
            },
        }
    }
}

const DASHBOARD: &str = include_str!("dashboard.html");

impl Server {
    pub fn new(options: Options) -> Arc<Server> {
        Arc::new(Server {
            runtime: options.runtime,
            fleet: options.fleet,
            db: options.db,
            token: options.token,
            mocks: options.mocks,
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Restart safety: every execution the store says is running is resumed here.
    pub fn resume_running(self: &Arc<Self>) -> Result<usize, shoal_store::Error> {
        let running: Vec<String> = self
            .db
            .executions()?
            .into_iter()
            .filter(|e| e.status == shoal_store::ExecutionStatus::Running)
            .map(|e| e.arn)
            .collect();
        for arn in &running {
            self.spawn_resume(arn.clone(), false);
        }
        Ok(running.len())
    }

    fn spawn_resume(self: &Arc<Self>, arn: String, redrive: bool) {
        let rt = self.runtime.clone();
        let key = arn.clone();
        let this = self.clone();
        let h = tokio::spawn(async move {
            if let Err(e) = rt.resume(&arn, redrive).await {
                eprintln!("shoal: resuming {arn}: {e}");
            }
            this.finished(&arn);
        });
        self.track(key, h.abort_handle());
    }

    fn track(&self, arn: String, h: tokio::task::AbortHandle) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|_, h| !h.is_finished());
        running.insert(arn, h);
    }

    fn finished(&self, arn: &str) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(arn);
    }

    /// Serves HTTP on `listener` until the future is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        serve_http(listener, self, |this: Arc<Server>, req| async move {
            this.http(req).await
        })
        .await
    }

    async fn http(
        self: Arc<Self>,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let uri = parts.uri.to_string();
        let reply = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => {
                self.handle(parts.method.as_str(), &uri, &headers, &b.to_bytes())
                    .await
            }
            Err(_) => ApiError {
                status: 413,
                code: "ValidationException",
                message: format!("the request body is over {MAX_BODY} bytes"),
            }
            .reply(),
        };
        let mut b = hyper::Response::builder()
            .status(reply.status)
            .header("content-type", reply.content_type)
            .header("cache-control", "no-store");
        for (k, v) in &reply.headers {
            b = b.header(*k, v);
        }
        b.body(Full::new(Bytes::from(reply.body)))
            .unwrap_or_default()
    }

    /// The token, when one is set, comes as `Authorization: Bearer T`, as the access
    /// key id of an AWS signature (so `AWS_ACCESS_KEY_ID=T aws ...` works), or as
    /// `?token=T` (for opening the dashboard in a browser).
    pub fn authorized(&self, uri: &str, headers: &[(String, String)]) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let auth = headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        auth == format!("Bearer {token}")
            || auth.contains(&format!("Credential={token}/"))
            || uri
                .split_once('?')
                .is_some_and(|(_, q)| q.split('&').any(|kv| kv == format!("token={token}")))
    }

    /// Lambda's Invoke API for the registered functions: RequestResponse, Event (run in
    /// the background, 202) and DryRun (204).
    async fn lambda_invoke(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Response {
        let name = path
            .trim_start_matches("/2015-03-31/functions/")
            .strip_suffix("/invocations")
            .unwrap_or("");
        let name = name.replace("%3A", ":").replace("%3a", ":");
        let header = |k: &str| {
            headers
                .iter()
                .find(|(h, _)| h == k)
                .map(|(_, v)| v.as_str())
        };
        let request_id = shoal_expr::uuid_v4(&self.runtime.entropy());
        let lambda_error = |status, code: &'static str, message: String| Response {
            status,
            content_type: "application/json",
            body: json!({"Type": "User", "message": message})
                .to_string()
                .into_bytes(),
            headers: vec![
                ("x-amzn-errortype", code.to_string()),
                ("x-amzn-requestid", request_id.clone()),
            ],
        };
        if body.len() > 6 * 1024 * 1024 {
            return lambda_error(
                413,
                "RequestTooLargeException",
                "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
                    .into(),
            );
        }
        let functions = self.runtime.clone();
        let payload = Bytes::copy_from_slice(if body.is_empty() { b"{}" } else { body });
        match header("x-amz-invocation-type").unwrap_or("RequestResponse") {
            "DryRun" | "Event" => {
                if let Err(f) = functions
                    .tasks()
                    .functions()
                    .invoke_api_check(&name, &request_id)
                {
                    return lambda_error(
                        404,
                        "ResourceNotFoundException",
                        f.cause.unwrap_or_default(),
                    );
                }
                let dry = header("x-amz-invocation-type") == Some("DryRun");
                if !dry {
                    let rid = request_id.clone();
                    tokio::spawn(async move {
                        let _ = functions
                            .tasks()
                            .functions()
                            .invoke_api(&name, payload, &rid)
                            .await;
                    });
                }
                Response {
                    status: if dry { 204 } else { 202 },
                    content_type: "application/json",
                    body: Vec::new(),
                    headers: vec![("x-amzn-requestid", request_id)],
                }
            }
            "RequestResponse" => match functions
                .tasks()
                .functions()
                .invoke_api(&name, payload, &request_id)
                .await
            {
                Ok((body, error)) => {
                    let mut headers = vec![
                        ("x-amzn-requestid", request_id),
                        ("x-amz-executed-version", "$LATEST".to_string()),
                    ];
                    if let Some(e) = error {
                        headers.push(("x-amz-function-error", e.to_string()));
                    }
                    Response {
                        status: 200,
                        content_type: "application/json",
                        body: body.to_vec(),
                        headers,
                    }
                }
                Err(f) => lambda_error(
                    404,
                    "ResourceNotFoundException",
                    f.cause.unwrap_or_default(),
                ),
            },
            other => lambda_error(
                400,
                "InvalidParameterValueException",
                format!("InvocationType {other:?} is not RequestResponse, Event or DryRun"),
            ),
        }
    }

    /// One request, from bytes to bytes. Never panics on any input. Every response
    /// carries an `x-amzn-RequestId`, which the SDKs report as the request id.
    pub async fn handle(
        self: &Arc<Self>,
        method: &str,
        uri: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Response {
        let mut r = self.respond(method, uri, headers, body).await;
        if !r.headers.iter().any(|(k, _)| *k == "x-amzn-requestid") {
            r.headers.push((
                "x-amzn-requestid",
                shoal_expr::uuid_v4(&self.runtime.entropy()),
            ));
        }
        r
    }

    async fn respond(
        self: &Arc<Self>,
        method: &str,
        uri: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Response {
        if !self.authorized(uri, headers) {
            return ApiError {
                status: 403,
                code: "AccessDeniedException",
                message: "a token is required: Authorization: Bearer <token>, or AWS_ACCESS_KEY_ID=<token>".into(),
            }
            .reply();
        }
        let path = uri.split('?').next().unwrap_or("");
        match (method, path) {
            ("GET", "/") | ("GET", "/index.html") => {
                return Response {
                    status: 200,
                    content_type: "text/html; charset=utf-8",
                    body: DASHBOARD.as_bytes().to_vec(),
                    headers: Vec::new(),
                }
            }
            ("POST", "/") => {}
            ("POST", p) if p.starts_with("/2015-03-31/functions/") => {
                return self.lambda_invoke(p, headers, body).await
            }
            ("GET", _) => {
                return ApiError {
                    status: 404,
                    code: "NotFound",
                    message: format!("no page {path}"),
                }
                .reply()
            }
            _ => {
                return ApiError {
                    status: 405,
                    code: "MethodNotAllowed",
                    message: "the API is POST / with X-Amz-Target".into(),
                }
                .reply()
            }
        }
        let target = headers
            .iter()
            .find(|(k, _)| k == "x-amz-target")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let Some(op) = target
            .strip_prefix("AWSStepFunctions.")
            .or_else(|| target.strip_prefix("Shoal."))
        else {
            return ApiError::new(
                "UnknownOperationException",
                format!("unknown X-Amz-Target {target:?}"),
            )
            .reply();
        };
        let params: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            match serde_json::from_slice(body) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => {
                    return ApiError::new(
                        "SerializationException",
                        "the request body must be a JSON object",
                    )
                    .reply()
                }
                Err(e) => {
                    return ApiError::new(
                        "SerializationException",
                        format!("the request body is not JSON: {e}"),
                    )
                    .reply()
                }
            }
        };
        match self.call(op, &params).await {
            Ok(v) => Response::json(&v),
            Err(e) => e.reply(),
        }
    }
}

/// Serves HTTP/1.1 on `listener`, calling `handler(state, request)`, until this future
/// is dropped: its connections are tasks it owns, so dropping it stops them all.
pub async fn serve_http<S, F, Fut>(listener: tokio::net::TcpListener, state: S, handler: F)
where
    S: Clone + Send + 'static,
    F: Fn(S, hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = hyper::Response<http_body_util::Full<bytes::Bytes>>>
        + Send
        + 'static,
{
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // The listener is still good: a connection reset before it was taken,
                // or no descriptor free (EMFILE) until connections close. Ending here
                // would leave the port open and nobody answering.
                use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
                if !matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        // A finished connection's task stays in the set until joined: reap them, or
        // each connection ever made keeps its memory.
        while conns.try_join_next().is_some() {}
        let (state, handler) = (state.clone(), handler.clone());
        conns.spawn(async move {
            // Request/response over loopback: never hold a small write back for an ACK.
            let _ = stream.set_nodelay(true);
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req| {
                let fut = handler(state.clone(), req);
                async move { Ok::<_, std::convert::Infallible>(fut.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}
