//! The HTTP Task, `arn:aws:states:::http:invoke`: one HTTP request, its response as the
//! Task's result. Non-2xx answers fail the Task with `States.Http.StatusCode.<code>` and
//! network failures with `States.Http.Socket`, so Retry and Catch see both by name.
//! `Authentication.ConnectionArn` is accepted but shoal has no EventBridge connections:
//! put credentials in `Headers` when running locally.

use serde_json::{json, Map, Value};
use shoal_expr::{compact, Failure};
use std::time::Duration;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => compact(other),
    }
}

/// `k=v` pairs of an object, arrays spelled per Transform's ArrayFormat.
fn pairs(obj: &Map<String, Value>, array_format: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in obj {
        match v {
            Value::Array(items) => match array_format {
                "BRACKETS" => out.extend(items.iter().map(|i| (format!("{k}[]"), text(i)))),
                "INDICES" => out.extend(
                    items
                        .iter()
                        .enumerate()
                        .map(|(n, i)| (format!("{k}[{n}]"), text(i))),
                ),
                "COMMAS" => out.push((
                    k.clone(),
                    items.iter().map(text).collect::<Vec<_>>().join(","),
                )),
                "NONE" => out.push((k.clone(), compact(v))),
                _ => out.extend(items.iter().map(|i| (k.clone(), text(i)))),
            },
            other => out.push((k.clone(), text(other))),
        }
    }
    out
}

fn encode(pairs: &[(String, String)]) -> String {
    fn esc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The HTTP Task's client: one connection pool for every call, made on first use.
#[derive(Default)]
pub struct Client {
    inner: std::sync::OnceLock<reqwest::Client>,
}

impl Client {
    fn get(&self) -> Result<&reqwest::Client, Failure> {
        if let Some(c) = self.inner.get() {
            return Ok(c);
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = reqwest::Client::builder()
            .build()
            .map_err(|e| Failure::new("States.Http.Socket", e.to_string()))?;
        Ok(self.inner.get_or_init(|| c))
    }

    pub async fn invoke(
        &self,
        params: &Value,
        timeout: Option<Duration>,
    ) -> Result<Value, Failure> {
        invoke(self.get()?, params, timeout).await
    }
}

async fn invoke(
    client: &reqwest::Client,
    params: &Value,
    timeout: Option<Duration>,
) -> Result<Value, Failure> {
    let field = |name: &str| {
        params.get(name).and_then(Value::as_str).ok_or_else(|| {
            Failure::runtime(format!(
                "http:invoke needs a string {name} in its Parameters"
            ))
        })
    };
    let endpoint = field("ApiEndpoint")?;
    let method = field("Method")?.to_ascii_uppercase();
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| Failure::runtime(format!("http:invoke: unknown Method {method:?}")))?;
    let transform = params.get("Transform");
    let array_format = transform
        .and_then(|t| t.pointer("/RequestEncodingOptions/ArrayFormat"))
        .and_then(Value::as_str)
        .unwrap_or("DEFAULT");
    let mut url = endpoint.to_string();
    if let Some(Value::Object(q)) = params.get("QueryParameters") {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&encode(&pairs(q, array_format)));
    }
    let mut req = client.request(method, &url);
    if let Some(t) = timeout {
        req = req.timeout(t);
    }
    if let Some(Value::Object(h)) = params.get("Headers") {
        for (k, v) in h {
            req = req.header(k.as_str(), text(v));
        }
    }
    let url_encoded = transform
        .and_then(|t| t.get("RequestBodyEncoding"))
        .and_then(Value::as_str)
        == Some("URL_ENCODED");
    req = match params.get("RequestBody") {
        None | Some(Value::Null) => req,
        Some(Value::Object(o)) if url_encoded => req
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(encode(&pairs(o, array_format))),
        Some(Value::String(s)) => req.body(s.clone()),
        Some(v) => req
            .header("Content-Type", "application/json")
            .body(compact(v)),
    };
    let resp = req
        .send()
        .await
        .map_err(|e| Failure::new("States.Http.Socket", format!("{url}: {e}")))?;
    let status = resp.status();
    let mut headers = Map::new();
    for (k, v) in resp.headers() {
        let v = Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned());
        match headers.get_mut(k.as_str()) {
            Some(Value::Array(a)) => a.push(v),
            _ => {
                headers.insert(k.as_str().to_string(), json!([v]));
            }
        }
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| Failure::new("States.Http.Socket", format!("{url}: {e}")))?;
    if body.len() > shoal_asl::identity::PAYLOAD_LIMIT {
        return Err(Failure::new(
            shoal_expr::errors::DATA_LIMIT_EXCEEDED,
            "The state/task 'http:invoke' returned a result with a size exceeding the maximum number of bytes service limit.",
        ));
    }
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let result = json!({
        "Headers": headers,
        "ResponseBody": body,
        "StatusCode": status.as_u16(),
        "StatusText": status.canonical_reason().unwrap_or(""),
    });
    if !status.is_success() {
        return Err(Failure::new(
            format!("States.Http.StatusCode.{}", status.as_u16()),
            compact(&result),
        ));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_formats() {
        let o = json!({"a": [1, 2], "b": "x y"});
        let o = o.as_object().unwrap();
        assert_eq!(encode(&pairs(o, "DEFAULT")), "a=1&a=2&b=x%20y");
        assert_eq!(encode(&pairs(o, "BRACKETS")), "a%5B%5D=1&a%5B%5D=2&b=x%20y");
        assert_eq!(
            encode(&pairs(o, "INDICES")),
            "a%5B0%5D=1&a%5B1%5D=2&b=x%20y"
        );
        assert_eq!(encode(&pairs(o, "COMMAS")), "a=1%2C2&b=x%20y");
    }
}
