//! Values in and out of a service's shapes. Step Functions writes parameters in
//! PascalCase (`StateMachineArn` for the member `stateMachineArn`) and returns output
//! in PascalCase; the wire uses the model's own names.

use crate::model::{upper_first, Member, Service, Shape, ShapeType};
use crate::xml::Element;
use base64::Engine;
use serde_json::{Map, Value};

/// The value a definition gives for a member: its PascalCase name or the model's own.
pub fn lookup<'a>(input: &'a Map<String, Value>, member: &str) -> Option<&'a Value> {
    input
        .get(&upper_first(member))
        .or_else(|| input.get(member))
        .filter(|v| !v.is_null())
}

/// Text for a scalar in a URI, header, query string or form field.
pub fn scalar_text(shape: &Shape, v: &Value, header: bool) -> String {
    match (shape.kind, v) {
        (ShapeType::Timestamp, v) => {
            let t = timestamp_of(v);
            match (shape.timestamp_format.as_deref(), header) {
                (Some("unixTimestamp"), _) => t.map(|t| t.timestamp().to_string()),
                (Some("rfc822"), _) | (None, true) => t.map(|t| t.to_rfc2822()),
                _ => t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            }
            .unwrap_or_else(|| plain(v))
        }
        (ShapeType::Blob, Value::String(s)) if header => {
            base64::engine::general_purpose::STANDARD.encode(s)
        }
        _ => plain(v),
    }
}

/// A JSON value as text: strings bare, anything else as JSON.
pub fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn timestamp_of(v: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    match v {
        Value::Number(n) => {
            let s = n.as_f64()?;
            chrono::DateTime::from_timestamp_millis((s * 1000.0).round() as i64)
        }
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&chrono::Utc))
            .or_else(|_| {
                chrono::DateTime::parse_from_rfc2822(s).map(|t| t.with_timezone(&chrono::Utc))
            })
            .ok()
            .or_else(|| s.parse::<f64>().ok().and_then(|n| timestamp_of(&n.into()))),
        _ => None,
    }
}

/// A timestamp as Step Functions returns one: ISO-8601 in UTC.
fn timestamp_out(t: chrono::DateTime<chrono::Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A scalar read from text (XML, headers) as its shape's JSON type.
pub fn scalar_from_text(shape: &Shape, text: &str) -> Value {
    match shape.kind {
        ShapeType::Integer | ShapeType::Long | ShapeType::Short | ShapeType::Byte => text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| text.into()),
        ShapeType::Float | ShapeType::Double | ShapeType::BigDecimal | ShapeType::BigInteger => {
            text.trim()
                .parse::<f64>()
                .ok()
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                .unwrap_or_else(|| text.into())
        }
        ShapeType::Boolean => Value::Bool(text.trim() == "true"),
        ShapeType::Timestamp => timestamp_of(&Value::String(text.trim().to_string()))
            .map(timestamp_out)
            .unwrap_or_else(|| text.into()),
        _ => text.into(),
    }
}

/// A definition's value as the JSON protocols send it.
pub fn to_json(svc: &Service, shape: &str, v: &Value, body_only: bool) -> Value {
    let Some(s) = svc.shape(shape) else {
        return v.clone();
    };
    match (s.kind, v) {
        (ShapeType::Structure, Value::Object(o)) if !s.document => {
            let mut out = Map::new();
            for (name, m) in &s.members {
                if body_only && m.location.is_some() {
                    continue;
                }
                if let Some(x) = lookup(o, name) {
                    let key = m.location_name.clone().unwrap_or_else(|| name.clone());
                    out.insert(key, member_to_json(svc, m, x));
                }
            }
            Value::Object(out)
        }
        (ShapeType::List, Value::Array(a)) => match &s.member {
            Some(m) => a.iter().map(|x| member_to_json(svc, m, x)).collect(),
            None => v.clone(),
        },
        (ShapeType::Map, Value::Object(o)) => match &s.value {
            Some(m) => Value::Object(
                o.iter()
                    .map(|(k, x)| (k.clone(), member_to_json(svc, m, x)))
                    .collect(),
            ),
            None => v.clone(),
        },
        (ShapeType::Timestamp, v) => match timestamp_of(v) {
            Some(t) if s.timestamp_format.as_deref() == Some("iso8601") => {
                Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            }
            Some(t) => serde_json::Number::from_f64(t.timestamp_millis() as f64 / 1000.0)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            None => v.clone(),
        },
        // A string member given a JSON value: Step Functions sends its JSON text.
        (ShapeType::String, v) if !v.is_string() => Value::String(v.to_string()),
        _ => v.clone(),
    }
}

fn member_to_json(svc: &Service, m: &Member, v: &Value) -> Value {
    if m.jsonvalue {
        return Value::String(plain(v));
    }
    to_json(svc, &m.shape, v, false)
}

/// A JSON protocol's response as Step Functions returns it.
pub fn from_json(svc: &Service, shape: &str, v: &Value) -> Value {
    let Some(s) = svc.shape(shape) else {
        return v.clone();
    };
    match (s.kind, v) {
        (ShapeType::Structure, Value::Object(o)) if !s.document => {
            let mut out = Map::new();
            for (name, m) in &s.members {
                let key = m.location_name.as_deref().unwrap_or(name);
                // The SDKs drop a member sent as null.
                if let Some(x) = o.get(key).filter(|x| !x.is_null()) {
                    out.insert(upper_first(name), from_json(svc, &m.shape, x));
                }
            }
            Value::Object(out)
        }
        (ShapeType::List, Value::Array(a)) => match &s.member {
            Some(m) => a.iter().map(|x| from_json(svc, &m.shape, x)).collect(),
            None => v.clone(),
        },
        (ShapeType::Map, Value::Object(o)) => match &s.value {
            Some(m) => Value::Object(
                o.iter()
                    .map(|(k, x)| (k.clone(), from_json(svc, &m.shape, x)))
                    .collect(),
            ),
            None => v.clone(),
        },
        (ShapeType::Timestamp, v) => timestamp_of(v).map(timestamp_out).unwrap_or(v.clone()),
        _ => v.clone(),
    }
}

/// The query and EC2 protocols' form fields for a value (`Name.member.1`, ...).
pub fn to_form(
    svc: &Service,
    shape: &str,
    v: &Value,
    prefix: &str,
    ec2: bool,
    out: &mut Vec<(String, String)>,
) {
    let Some(s) = svc.shape(shape) else {
        out.push((prefix.to_string(), plain(v)));
        return;
    };
    let join = |p: &str, n: &str| {
        if p.is_empty() {
            n.to_string()
        } else {
            format!("{p}.{n}")
        }
    };
    match (s.kind, v) {
        (ShapeType::Structure, Value::Object(o)) => {
            for (name, m) in &s.members {
                let Some(x) = lookup(o, name) else { continue };
                let wire = if ec2 {
                    m.query_name
                        .clone()
                        .or_else(|| m.location_name.as_deref().map(upper_first))
                        .unwrap_or_else(|| name.clone())
                } else {
                    m.location_name.clone().unwrap_or_else(|| name.clone())
                };
                let flat = m.flattened || svc.shape(&m.shape).is_some_and(|ms| ms.flattened);
                let p = join(prefix, &wire);
                to_form_member(svc, m, x, &p, ec2, flat, out);
            }
        }
        (ShapeType::Timestamp, v) => out.push((prefix.to_string(), scalar_text(s, v, false))),
        (ShapeType::Boolean | ShapeType::Integer | ShapeType::Long | ShapeType::Double, v) => {
            out.push((prefix.to_string(), plain(v)))
        }
        (_, Value::Array(_) | Value::Object(_)) => out.push((prefix.to_string(), v.to_string())),
        _ => out.push((prefix.to_string(), plain(v))),
    }
}

fn to_form_member(
    svc: &Service,
    m: &Member,
    v: &Value,
    prefix: &str,
    ec2: bool,
    flat: bool,
    out: &mut Vec<(String, String)>,
) {
    let Some(s) = svc.shape(&m.shape) else {
        out.push((prefix.to_string(), plain(v)));
        return;
    };
    match (s.kind, v) {
        (ShapeType::List, Value::Array(a)) => {
            let Some(item) = &s.member else { return };
            if a.is_empty() && !ec2 {
                out.push((prefix.to_string(), String::new()));
            }
            for (i, x) in a.iter().enumerate() {
                let p = if ec2 || flat {
                    format!("{prefix}.{}", i + 1)
                } else {
                    let n = item.location_name.as_deref().unwrap_or("member");
                    format!("{prefix}.{n}.{}", i + 1)
                };
                to_form(svc, &item.shape, x, &p, ec2, out);
            }
        }
        (ShapeType::Map, Value::Object(o)) => {
            let (Some(k), Some(val)) = (&s.key, &s.value) else {
                return;
            };
            let kn = k.location_name.as_deref().unwrap_or("key");
            let vn = val.location_name.as_deref().unwrap_or("value");
            for (i, (key, x)) in o.iter().enumerate() {
                let p = if flat {
                    format!("{prefix}.{}", i + 1)
                } else {
                    format!("{prefix}.entry.{}", i + 1)
                };
                out.push((format!("{p}.{kn}"), key.clone()));
                to_form(svc, &val.shape, x, &format!("{p}.{vn}"), ec2, out);
            }
        }
        _ => to_form(svc, &m.shape, v, prefix, ec2, out),
    }
}

/// An XML element's content as its shape's value, in Step Functions' PascalCase.
pub fn from_xml(svc: &Service, shape: &str, e: &Element) -> Value {
    let Some(s) = svc.shape(shape) else {
        return Value::String(e.text.clone());
    };
    match s.kind {
        ShapeType::Structure => {
            let mut out = Map::new();
            for (name, m) in &s.members {
                if m.location.is_some() {
                    continue;
                }
                let wire = m.location_name.as_deref().unwrap_or(name);
                if m.xml_attribute {
                    if let Some(a) = e.attr(wire) {
                        let ms = svc.shape(&m.shape);
                        out.insert(
                            upper_first(name),
                            ms.map(|ms| scalar_from_text(ms, a)).unwrap_or(a.into()),
                        );
                    }
                    continue;
                }
                let ms = svc.shape(&m.shape);
                let flat = m.flattened || ms.is_some_and(|ms| ms.flattened);
                let value = match ms.map(|ms| ms.kind) {
                    Some(ShapeType::List) if flat => {
                        let items: Vec<&Element> = e.children_named(wire).collect();
                        if items.is_empty() {
                            continue;
                        }
                        let item = ms.and_then(|ms| ms.member.as_ref());
                        Value::Array(
                            items
                                .into_iter()
                                .map(|c| match item {
                                    Some(i) => from_xml(svc, &i.shape, c),
                                    None => Value::String(c.text.clone()),
                                })
                                .collect(),
                        )
                    }
                    Some(ShapeType::Map) if flat => {
                        let entries: Vec<&Element> = e.children_named(wire).collect();
                        if entries.is_empty() {
                            continue;
                        }
                        map_from_xml(svc, ms.unwrap_or(s), entries)
                    }
                    _ => match e.child(wire) {
                        Some(c) => from_xml(svc, &m.shape, c),
                        None => continue,
                    },
                };
                out.insert(upper_first(name), value);
            }
            Value::Object(out)
        }
        ShapeType::List => {
            let Some(item) = &s.member else {
                return Value::Array(vec![]);
            };
            let n = item.location_name.as_deref().unwrap_or("member");
            Value::Array(
                e.children
                    .iter()
                    .filter(|c| c.name == n || n == "member" && c.name == "item")
                    .map(|c| from_xml(svc, &item.shape, c))
                    .collect(),
            )
        }
        ShapeType::Map => map_from_xml(svc, s, e.children_named("entry").collect()),
        _ => scalar_from_text(s, &e.text),
    }
}

fn map_from_xml(svc: &Service, s: &Shape, entries: Vec<&Element>) -> Value {
    let (Some(k), Some(v)) = (&s.key, &s.value) else {
        return Value::Object(Map::new());
    };
    let kn = k.location_name.as_deref().unwrap_or("key");
    let vn = v.location_name.as_deref().unwrap_or("value");
    let mut out = Map::new();
    for entry in entries {
        let key = entry.child(kn).map(|c| c.text.clone()).unwrap_or_default();
        let val = entry
            .child(vn)
            .map(|c| from_xml(svc, &v.shape, c))
            .unwrap_or(Value::Null);
        out.insert(key, val);
    }
    Value::Object(out)
}

/// A value as a REST-XML body element.
pub fn to_xml(svc: &Service, shape: &str, name: &str, v: &Value, out: &mut Element) {
    let Some(s) = svc.shape(shape) else {
        out.children.push(Element::leaf(name, plain(v)));
        return;
    };
    let mut el = Element::new(name);
    if let Some(ns) = s.xml_namespace.as_ref().and_then(|n| n.uri.as_ref()) {
        el.attrs.push(("xmlns".into(), ns.clone()));
    }
    match (s.kind, v) {
        (ShapeType::Structure, Value::Object(o)) => {
            for (mname, m) in &s.members {
                if m.location.is_some() {
                    continue;
                }
                let Some(x) = lookup(o, mname) else { continue };
                let wire = m.location_name.as_deref().unwrap_or(mname);
                if m.xml_attribute {
                    el.attrs.push((wire.to_string(), plain(x)));
                    continue;
                }
                let ms = svc.shape(&m.shape);
                let flat = m.flattened || ms.is_some_and(|ms| ms.flattened);
                match (ms.map(|ms| ms.kind), x) {
                    (Some(ShapeType::List), Value::Array(items)) if flat => {
                        let item = ms.and_then(|ms| ms.member.as_ref());
                        for i in items {
                            match item {
                                Some(it) => to_xml(svc, &it.shape, wire, i, &mut el),
                                None => el.children.push(Element::leaf(wire, plain(i))),
                            }
                        }
                    }
                    _ => to_xml(svc, &m.shape, wire, x, &mut el),
                }
            }
        }
        (ShapeType::List, Value::Array(items)) => {
            if let Some(it) = &s.member {
                let n = it.location_name.as_deref().unwrap_or("member");
                for i in items {
                    to_xml(svc, &it.shape, n, i, &mut el);
                }
            }
        }
        (ShapeType::Map, Value::Object(o)) => {
            if let (Some(k), Some(val)) = (&s.key, &s.value) {
                for (key, x) in o {
                    let mut entry = Element::new("entry");
                    entry.children.push(Element::leaf(
                        k.location_name.as_deref().unwrap_or("key"),
                        key.clone(),
                    ));
                    to_xml(
                        svc,
                        &val.shape,
                        val.location_name.as_deref().unwrap_or("value"),
                        x,
                        &mut entry,
                    );
                    el.children.push(entry);
                }
            }
        }
        _ => el.text = scalar_text(s, v, false),
    }
    out.children.push(el);
}
