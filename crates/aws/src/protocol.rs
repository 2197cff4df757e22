//! The five wire protocols of botocore's models: requests built, responses and errors
//! read.

use crate::codec::{self, lookup, plain, scalar_from_text, scalar_text};
use crate::model::{upper_first, Location, Operation, Protocol, Service, ShapeType};
use crate::xml::Element;
use crate::{CallError, ServiceError};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

pub(crate) struct Request {
    pub method: reqwest::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// RFC 3986's unreserved characters stay; everything else is escaped.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const GREEDY: &AsciiSet = &UNRESERVED.remove(b'/');

fn encode(s: &str, set: &'static AsciiSet) -> String {
    utf8_percent_encode(s, set).to_string()
}

pub(crate) fn build(
    svc: &Service,
    op_name: &str,
    op: &Operation,
    input: &Value,
    base: &str,
) -> Result<Request, CallError> {
    let empty = Map::new();
    let obj = input.as_object().unwrap_or(&empty);
    let input_shape = op.input.as_deref();
    match svc.protocol {
        Protocol::Json => {
            let body = match input_shape {
                Some(s) => codec::to_json(svc, s, input, false),
                None => Value::Object(Map::new()),
            };
            let version = svc.json_version.as_deref().unwrap_or("1.0");
            let mut headers = vec![(
                "content-type".to_string(),
                format!("application/x-amz-json-{version}"),
            )];
            if let Some(t) = &svc.target_prefix {
                headers.push(("x-amz-target".into(), format!("{t}.{op_name}")));
            }
            Ok(Request {
                method: reqwest::Method::POST,
                url: format!("{base}/"),
                headers,
                body: body.to_string().into_bytes(),
            })
        }
        Protocol::Query | Protocol::Ec2 => {
            let mut fields = vec![
                ("Action".to_string(), op_name.to_string()),
                (
                    "Version".to_string(),
                    svc.api_version.clone().unwrap_or_default(),
                ),
            ];
            if let Some(s) = input_shape {
                codec::to_form(
                    svc,
                    s,
                    input,
                    "",
                    svc.protocol == Protocol::Ec2,
                    &mut fields,
                );
            }
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish();
            Ok(Request {
                method: reqwest::Method::POST,
                url: format!("{base}/"),
                headers: vec![(
                    "content-type".into(),
                    "application/x-www-form-urlencoded; charset=utf-8".into(),
                )],
                body: body.into_bytes(),
            })
        }
        Protocol::RestJson | Protocol::RestXml => rest(svc, op, obj, input, base),
        Protocol::Unsupported => Err(CallError::UnsupportedProtocol {
            service: svc.id.clone(),
            protocol: svc.protocol,
        }),
    }
}

fn rest(
    svc: &Service,
    op: &Operation,
    obj: &Map<String, Value>,
    input: &Value,
    base: &str,
) -> Result<Request, CallError> {
    let (path, fixed_query) = op.uri.split_once('?').unwrap_or((&op.uri, ""));
    let mut path = path.to_string();
    let mut query: Vec<(String, String)> = Vec::new();
    for pair in fixed_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query.push((k.to_string(), v.to_string()));
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut body = Vec::new();
    let shape = op.input.as_deref().and_then(|s| svc.shape(s));
    if let Some(shape) = shape {
        for (name, m) in &shape.members {
            let wire = m.location_name.as_deref().unwrap_or(name);
            let Some(v) = lookup(obj, name) else { continue };
            let Some(ms) = svc.shape(&m.shape) else {
                continue;
            };
            match m.location {
                Some(Location::Uri) => {
                    let text = scalar_text(ms, v, false);
                    let greedy = format!("{{{wire}+}}");
                    if path.contains(&greedy) {
                        path = path.replace(&greedy, &encode(&text, GREEDY));
                    } else {
                        path = path.replace(&format!("{{{wire}}}"), &encode(&text, UNRESERVED));
                    }
                }
                Some(Location::Querystring) => match (ms.kind, v) {
                    (ShapeType::List, Value::Array(a)) => {
                        for x in a {
                            query.push((wire.to_string(), plain(x)));
                        }
                    }
                    (ShapeType::Map, Value::Object(o)) => {
                        for (k, x) in o {
                            query.push((k.clone(), plain(x)));
                        }
                    }
                    _ => query.push((wire.to_string(), scalar_text(ms, v, false))),
                },
                Some(Location::Header) => {
                    let text = match (ms.kind, v) {
                        (ShapeType::List, Value::Array(a)) => {
                            a.iter().map(plain).collect::<Vec<_>>().join(",")
                        }
                        _ if m.jsonvalue => base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            plain(v),
                        ),
                        _ => scalar_text(ms, v, true),
                    };
                    headers.push((wire.to_ascii_lowercase(), text));
                }
                Some(Location::Headers) => {
                    if let Value::Object(o) = v {
                        for (k, x) in o {
                            headers.push((format!("{wire}{k}").to_ascii_lowercase(), plain(x)));
                        }
                    }
                }
                _ => {}
            }
        }
        // Labels not given are left empty rather than sent as `{Label}`.
        while let (Some(a), Some(b)) = (path.find('{'), path.find('}')) {
            if b < a {
                break;
            }
            path.replace_range(a..=b, "");
        }
        match &shape.payload {
            Some(p) => {
                let m = &shape.members[p];
                if let (Some(v), Some(ps)) = (lookup(obj, p), svc.shape(&m.shape)) {
                    match ps.kind {
                        ShapeType::Blob | ShapeType::String => body = plain(v).into_bytes(),
                        _ if svc.protocol == Protocol::RestJson => {
                            body = codec::to_json(svc, &m.shape, v, false)
                                .to_string()
                                .into_bytes();
                            headers.push(("content-type".into(), "application/json".into()));
                        }
                        _ => {
                            let name = m.location_name.as_deref().unwrap_or(p);
                            let mut root = Element::new("#root");
                            codec::to_xml(svc, &m.shape, name, v, &mut root);
                            if let (Some(el), Some(ns)) = (
                                root.children.first_mut(),
                                m.xml_namespace.as_ref().and_then(|n| n.uri.as_ref()),
                            ) {
                                el.attrs.retain(|(k, _)| k != "xmlns");
                                el.attrs.push(("xmlns".into(), ns.clone()));
                            }
                            if let Some(el) = root.children.first() {
                                let mut s = String::new();
                                el.write(None, &mut s);
                                body = s.into_bytes();
                            }
                            headers.push(("content-type".into(), "application/xml".into()));
                        }
                    }
                }
            }
            None => {
                let has_body = shape.members.values().any(|m| m.location.is_none());
                if has_body && svc.protocol == Protocol::RestJson {
                    let name = op.input.as_deref().unwrap_or_default();
                    body = codec::to_json(svc, name, input, true)
                        .to_string()
                        .into_bytes();
                    headers.push(("content-type".into(), "application/json".into()));
                } else if has_body {
                    if let Some(root_name) = &op.input_location_name {
                        let mut root = Element::new("#root");
                        let name = op.input.as_deref().unwrap_or_default();
                        codec::to_xml(svc, name, root_name, input, &mut root);
                        if let Some(el) = root.children.first_mut() {
                            if let Some(ns) =
                                op.input_xml_namespace.as_ref().and_then(|n| n.uri.as_ref())
                            {
                                el.attrs.push(("xmlns".into(), ns.clone()));
                            }
                            let mut s = String::new();
                            el.write(None, &mut s);
                            body = s.into_bytes();
                        }
                        headers.push(("content-type".into(), "application/xml".into()));
                    }
                }
            }
        }
    }
    let mut url = format!("{base}{path}");
    if !query.is_empty() {
        url.push('?');
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| {
                if v.is_empty() && fixed_query.split('&').any(|p| p == k) {
                    encode(k, UNRESERVED)
                } else {
                    format!("{}={}", encode(k, UNRESERVED), encode(v, UNRESERVED))
                }
            })
            .collect();
        url.push_str(&q.join("&"));
    }
    let method = reqwest::Method::from_bytes(op.method.as_bytes()).unwrap_or(reqwest::Method::POST);
    Ok(Request {
        method,
        url,
        headers,
        body,
    })
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A successful response as the output shape's value.
pub(crate) fn parse(
    svc: &Service,
    op: &Operation,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Value, String> {
    let Some(out_name) = op.output.as_deref() else {
        return Ok(Value::Object(Map::new()));
    };
    let json_body = || -> Result<Value, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Map::new()));
        }
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))
    };
    match svc.protocol {
        Protocol::Json => Ok(codec::from_json(svc, out_name, &json_body()?)),
        Protocol::Query | Protocol::Ec2 => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Object(Map::new()));
            }
            let root = Element::parse(body)?;
            let el = match &op.wrapper {
                Some(w) => root.find(w),
                None => Some(&root),
            };
            Ok(el
                .map(|e| codec::from_xml(svc, out_name, e))
                .unwrap_or(Value::Object(Map::new())))
        }
        Protocol::RestJson | Protocol::RestXml => {
            let shape = svc.shape(out_name).ok_or("no output shape")?;
            let mut out = Map::new();
            for (name, m) in &shape.members {
                let wire = m.location_name.as_deref().unwrap_or(name);
                let Some(ms) = svc.shape(&m.shape) else {
                    continue;
                };
                match m.location {
                    Some(Location::Header) => {
                        if let Some(h) = header(headers, wire) {
                            out.insert(upper_first(name), scalar_from_text(ms, h));
                        }
                    }
                    Some(Location::Headers) => {
                        let prefix = wire.to_ascii_lowercase();
                        let map: Map<String, Value> = headers
                            .iter()
                            .filter_map(|(k, v)| {
                                let k = k.to_ascii_lowercase();
                                k.strip_prefix(&prefix)
                                    .map(|rest| (rest.to_string(), Value::String(v.clone())))
                            })
                            .collect();
                        out.insert(upper_first(name), Value::Object(map));
                    }
                    Some(Location::StatusCode) => {
                        out.insert(upper_first(name), status.into());
                    }
                    _ => {}
                }
            }
            match &shape.payload {
                Some(p) => {
                    let m = &shape.members[p];
                    let ps = svc.shape(&m.shape).ok_or("no payload shape")?;
                    let v = match ps.kind {
                        ShapeType::Blob | ShapeType::String => {
                            Value::String(String::from_utf8_lossy(body).into_owned())
                        }
                        _ if body.is_empty() => return Ok(Value::Object(out)),
                        _ if svc.protocol == Protocol::RestJson => {
                            codec::from_json(svc, &m.shape, &json_body()?)
                        }
                        _ => codec::from_xml(svc, &m.shape, &Element::parse(body)?),
                    };
                    out.insert(upper_first(p), v);
                }
                None if body.iter().all(u8::is_ascii_whitespace) => {}
                None => {
                    let v = if svc.protocol == Protocol::RestJson {
                        codec::from_json(svc, out_name, &json_body()?)
                    } else {
                        codec::from_xml(svc, out_name, &Element::parse(body)?)
                    };
                    if let Value::Object(o) = v {
                        out.extend(o);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        Protocol::Unsupported => Err("unsupported protocol".into()),
    }
}

/// An error response as a [`ServiceError`].
pub(crate) fn error(
    svc: &Service,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> ServiceError {
    let mut code = String::new();
    let mut message = String::new();
    let mut request_id = String::new();
    let mut extended = None;
    match svc.protocol {
        Protocol::Json | Protocol::RestJson => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let text = |k: &[&str]| {
                k.iter()
                    .find_map(|k| v.get(*k).and_then(Value::as_str))
                    .map(str::to_string)
            };
            code = header(headers, "x-amzn-ErrorType")
                .map(str::to_string)
                .or_else(|| text(&["__type", "code", "Code"]))
                .unwrap_or_default();
            message = text(&["message", "Message", "errorMessage"]).unwrap_or_default();
        }
        _ => {
            if let Ok(root) = Element::parse(body) {
                let text = |n: &str| root.find(n).map(|e| e.text.clone());
                code = text("Code").unwrap_or_default();
                message = text("Message").unwrap_or_default();
                request_id = text("RequestId").unwrap_or_default();
                // S3's error body carries its extended request id as HostId.
                extended = text("HostId");
            }
        }
    }
    // `aws.protocols#ValidationException:http://...` and `ns#Code` name the code last.
    let code = code.split(':').next().unwrap_or_default();
    let mut code = code.rsplit('#').next().unwrap_or_default().to_string();
    if svc.query_compatible {
        if let Some(q) = header(headers, "x-amzn-query-error") {
            code = q.split(';').next().unwrap_or_default().to_string();
        }
    }
    if code.is_empty() {
        code = match status {
            404 => "NotFound".into(),
            403 => "Forbidden".into(),
            400 => "BadRequest".into(),
            s => format!("Http{s}"),
        };
    }
    ServiceError {
        code,
        message,
        status,
        request_id,
        extended_request_id: extended,
        shape: None,
    }
}
