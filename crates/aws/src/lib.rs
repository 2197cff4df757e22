//! Calls to AWS APIs, driven by botocore's models rather than per-service code: a call
//! is a service key (`dynamodb`), an operation and a JSON input in Step Functions'
//! PascalCase; [`Client::call`] puts it on the wire in the service's protocol, signs
//! it with SigV4, and returns the response shaped by the model, or a typed error.
//! It knows nothing of ASL: the `tasks` crate names errors as Step Functions does.

pub mod check;
pub mod codec;
pub mod model;
pub mod profile;
mod protocol;
pub mod xml;

pub use check::check_output;
pub use model::{Protocol, Service};
pub use profile::Profile;

use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where one service's calls go, from `[services.<name>] endpoint = "..."` in shoal.toml.
pub type Endpoints = HashMap<String, String>;

/// An answer from a service.
#[derive(Debug, Clone)]
pub struct Response {
    /// The output shape's value, members in PascalCase.
    pub output: Value,
    pub status: u16,
    pub request_id: String,
    /// The body's length as the service sent it.
    pub body_len: usize,
    /// The body as the service sent it.
    pub body: Vec<u8>,
}

/// An error the service answered with.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceError {
    /// The wire error code (`ResourceNotFoundException`, `NoSuchKey`, `MissingParameter`).
    pub code: String,
    pub message: String,
    pub status: u16,
    pub request_id: String,
    /// S3's `x-amz-id-2`.
    pub extended_request_id: Option<String>,
    /// The modeled exception shape the code names, if any.
    pub shape: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no AWS service '{0}' is known (botocore {v})", v = model::botocore_version())]
    UnknownService(String),
    #[error("the AWS service '{service}' has no operation '{action}'")]
    UnknownOperation { service: String, action: String },
    #[error("the {protocol:?} protocol of '{service}' is not supported")]
    UnsupportedProtocol { service: String, protocol: Protocol },
    #[error("no endpoint for '{service}': set {env} or AWS_ENDPOINT_URL, add `[services.{service}] endpoint = \"http://...\"` to shoal.toml, or provide AWS credentials to call AWS itself")]
    NoEndpoint { service: String, env: String },
    #[error("{}: {} (status {})", .0.code, .0.message, .0.status)]
    Service(Box<ServiceError>),
    /// The endpoint could not be reached, or its answer could not be read (the SDKs'
    /// `SdkClientException`).
    #[error("{0}")]
    Client(String),
}

/// Calls AWS services; one per process, its connections pooled.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoints: Arc<Endpoints>,
}

impl Default for Client {
    fn default() -> Client {
        Client::new(Endpoints::new())
    }
}

impl Client {
    pub fn new(endpoints: Endpoints) -> Client {
        // reqwest's TLS needs a process-wide provider; another may be installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client {
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            endpoints: Arc::new(endpoints),
        }
    }

    /// Calls `action` (camelCase as in an ARN, or the operation's name) of `service`.
    pub async fn call(
        &self,
        service: &str,
        action: &str,
        input: &Value,
        timeout: Option<Duration>,
    ) -> Result<Response, CallError> {
        let svc =
            model::service(service).ok_or_else(|| CallError::UnknownService(service.into()))?;
        let (op_name, op) = svc
            .operation(action)
            .ok_or_else(|| CallError::UnknownOperation {
                service: service.into(),
                action: action.into(),
            })?;
        let target = self.resolve(service, &svc)?;
        let req = protocol::build(&svc, op_name, op, input, &target.base)?;
        let signed = sign(&svc, &target, &req)?;
        let mut builder = self
            .http
            .request(req.method.clone(), &req.url)
            .body(req.body.clone());
        for (k, v) in req.headers.iter().chain(signed.iter()) {
            builder = builder.header(k, v);
        }
        if let Some(t) = timeout {
            builder = builder.timeout(t);
        }
        let resp = builder.send().await.map_err(|e| {
            CallError::Client(format!(
                "Unable to execute HTTP request: {}",
                error_chain(&e)
            ))
        })?;
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp
            .bytes()
            .await
            .map_err(|e| {
                CallError::Client(format!("Unable to read the response: {}", error_chain(&e)))
            })?
            .to_vec();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let request_id = header("x-amzn-RequestId")
            .or_else(|| header("x-amz-request-id"))
            .unwrap_or_default();
        if status >= 300 {
            let mut e = protocol::error(&svc, status, &headers, &body);
            if e.request_id.is_empty() {
                e.request_id = request_id;
            }
            if let Some(x) = header("x-amz-id-2") {
                e.extended_request_id = Some(x);
            }
            e.shape = svc.error_shape(&e.code).map(str::to_string);
            return Err(CallError::Service(Box::new(e)));
        }
        let output = protocol::parse(&svc, op, status, &headers, &body)
            .map_err(|e| CallError::Client(format!("Unable to unmarshall response ({e})")))?;
        Ok(Response {
            output,
            status,
            request_id,
            body_len: body.len(),
            body,
        })
    }

    /// Where a service's calls go and how they are signed.
    fn resolve(&self, key: &str, svc: &Service) -> Result<Target, CallError> {
        resolve(
            key,
            svc,
            &self.endpoints,
            &|k| std::env::var(k).ok(),
            &Profile::load(),
        )
    }
}

/// Where a service's calls go, as the AWS SDKs find it: shoal.toml's
/// `[services.<key>]`, `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`, the profile's
/// `endpoint_url`; else AWS itself when there are credentials ("hybrid" mode).
fn resolve(
    key: &str,
    svc: &Service,
    endpoints: &Endpoints,
    env: &dyn Fn(&str) -> Option<String>,
    profile: &Profile,
) -> Result<Target, CallError> {
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    let env_name = format!(
        "AWS_ENDPOINT_URL_{}",
        svc.id.to_ascii_uppercase().replace([' ', '-'], "_")
    );
    let region = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or(profile.region.clone())
        .unwrap_or_else(|| "us-east-1".into());
    let credentials = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(a), Some(s)) => Some(Keys {
            access_key_id: a,
            secret_access_key: s,
            session_token: env("AWS_SESSION_TOKEN"),
        }),
        _ => credentials_of(profile),
    };
    let configured = endpoints
        .get(key)
        .cloned()
        .or_else(|| env(&env_name))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or(profile.endpoint_url.clone())
        .filter(|e| !e.is_empty());
    let (base, signing_region) = match (configured, &svc.global) {
        (Some(e), _) => (e.trim_end_matches('/').to_string(), region.clone()),
        (None, _) if credentials.is_none() => {
            return Err(CallError::NoEndpoint {
                service: key.into(),
                env: env_name,
            })
        }
        (None, Some(g)) => (format!("https://{}", g.host), g.region.clone()),
        (None, None) => (
            format!("https://{}.{region}.amazonaws.com", svc.endpoint_prefix),
            region.clone(),
        ),
    };
    // A local endpoint without credentials is signed as the SDKs sign for moto or
    // LocalStack: with dummy keys.
    let credentials = credentials.unwrap_or(Keys {
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
        session_token: None,
    });
    Ok(Target {
        base,
        region: signing_region,
        credentials,
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[derive(Debug, Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// A profile's keys, if it has both.
fn credentials_of(profile: &Profile) -> Option<Keys> {
    Some(Keys {
        access_key_id: profile.access_key_id.clone()?,
        secret_access_key: profile.secret_access_key.clone()?,
        session_token: profile.session_token.clone(),
    })
}

struct Target {
    base: String,
    region: String,
    credentials: Keys,
}

/// Signs a request with SigV4; returns the headers to add.
fn sign(
    svc: &Service,
    target: &Target,
    req: &protocol::Request,
) -> Result<Vec<(String, String)>, CallError> {
    sign_at(
        &svc.signing_name,
        &target.region,
        &target.credentials,
        req,
        SystemTime::now(),
    )
}

pub(crate) fn sign_at(
    signing_name: &str,
    region: &str,
    keys: &Keys,
    req: &protocol::Request,
    time: SystemTime,
) -> Result<Vec<(String, String)>, CallError> {
    use aws_sigv4::http_request::{
        sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
    };
    let identity = aws_credential_types::Credentials::new(
        &keys.access_key_id,
        &keys.secret_access_key,
        keys.session_token.clone(),
        None,
        "shoal",
    )
    .into();
    let mut settings = SigningSettings::default();
    if signing_name == "s3" {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(signing_name)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| CallError::Client(format!("cannot sign the request: {e}")))?
        .into();
    let signable = SignableRequest::new(
        req.method.as_str(),
        &req.url,
        req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(&req.body),
    )
    .map_err(|e| CallError::Client(format!("cannot sign the request: {e}")))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| CallError::Client(format!("cannot sign the request: {e}")))?
        .into_parts();
    let (headers, _) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's SigV4 test suite, `get-vanilla`: the signature AWS publishes for this
    /// request with the suite's example keys.
    #[test]
    fn sigv4_matches_the_published_get_vanilla_vector() {
        let req = protocol::Request {
            method: reqwest::Method::GET,
            url: "https://example.amazonaws.com/".into(),
            headers: vec![],
            body: vec![],
        };
        let keys = Keys {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 20150830T123600Z
        let headers = sign_at("service", "us-east-1", &keys, &req, time).unwrap();
        let auth = headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str())
            .unwrap();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn endpoints_resolve_as_the_sdks_resolve_them() {
        let ddb = model::service("dynamodb").unwrap();
        let none = Profile::default();
        let base = |e: &Endpoints, vars: &'static [(&'static str, &'static str)], p: &Profile| {
            resolve("dynamodb", &ddb, e, &env_of(vars), p).map(|t| (t.base, t.region))
        };
        // Nothing set: no endpoint, and the error says how to set one.
        let err = base(&Endpoints::new(), &[], &none).unwrap_err().to_string();
        assert!(err.contains("AWS_ENDPOINT_URL_DYNAMODB"), "{err}");
        // Credentials alone: AWS itself, in the configured region.
        let creds = &[
            ("AWS_ACCESS_KEY_ID", "A"),
            ("AWS_SECRET_ACCESS_KEY", "S"),
            ("AWS_REGION", "eu-west-1"),
        ];
        assert_eq!(
            base(&Endpoints::new(), creds, &none).unwrap(),
            (
                "https://dynamodb.eu-west-1.amazonaws.com".into(),
                "eu-west-1".into()
            )
        );
        // The service's own variable wins over the general one; shoal.toml over both.
        let both = &[
            ("AWS_ENDPOINT_URL", "http://general:1"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://ddb:2/"),
        ];
        assert_eq!(
            base(&Endpoints::new(), both, &none).unwrap().0,
            "http://ddb:2"
        );
        let toml: Endpoints = [("dynamodb".to_string(), "http://toml:3".to_string())].into();
        assert_eq!(base(&toml, both, &none).unwrap().0, "http://toml:3");
        // The profile's endpoint_url when no variable is set.
        let p = Profile {
            endpoint_url: Some("http://profile:4".into()),
            ..Profile::default()
        };
        assert_eq!(
            base(&Endpoints::new(), &[], &p).unwrap().0,
            "http://profile:4"
        );
        // A global service signs for its partition's region.
        let iam = model::service("iam").unwrap();
        let t = resolve("iam", &iam, &Endpoints::new(), &env_of(creds), &none).unwrap();
        assert_eq!(
            (t.base.as_str(), t.region.as_str()),
            ("https://iam.amazonaws.com", "us-east-1")
        );
        // Secrets Manager's variable is spelled with an underscore.
        let sm = model::service("secretsmanager").unwrap();
        let t = resolve(
            "secretsmanager",
            &sm,
            &Endpoints::new(),
            &env_of(&[("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://sm:5")]),
            &none,
        )
        .unwrap();
        assert_eq!(t.base, "http://sm:5");
    }

    #[test]
    fn every_service_key_resolves_to_a_model() {
        let keys: Vec<&str> = model::service_keys().collect();
        assert!(keys.len() > 400, "{} services", keys.len());
        for k in [
            "dynamodb",
            "s3",
            "sqs",
            "sns",
            "eventbridge",
            "sfn",
            "secretsmanager",
            "lambda",
            "ec2",
            "cloudwatchlogs",
        ] {
            let s = model::service(k).unwrap_or_else(|| panic!("{k}"));
            assert!(!s.ops.is_empty(), "{k}");
        }
        let ddb = model::service("dynamodb").unwrap();
        assert_eq!(ddb.operation("putItem").unwrap().0, "PutItem");
        assert_eq!(ddb.prefix, "DynamoDb");
    }
}
