//! Whether a JSON value fits an operation's output shape: TestState holds a mocked
//! service result to it (`mock.fieldValidationMode`). Members are matched by Step
//! Functions' PascalCase name or the model's own; a member the model does not know
//! is let through, as AWS does (models grow).

use crate::model::{self, upper_first, Service, Shape, ShapeType};
use serde_json::{Map, Value};

/// How strictly a value is held to the shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Required members must be present, and present ones must fit.
    Strict,
    /// Present members must fit.
    Present,
}

/// One way a value does not fit, worded as AWS's TestState words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("Required field '{0}' is missing")]
    Missing(String),
    #[error("Field '{field}' must be {expected}")]
    Type {
        field: String,
        expected: &'static str,
    },
    #[error("Field '{0}' is smaller than the minimum length")]
    TooShort(String),
    #[error("Field '{0}' exceeds the maximum length")]
    TooLong(String),
    #[error("Field '{0}' is less than the minimum value")]
    BelowMinimum(String),
    #[error("Field '{0}' exceeds the maximum value")]
    AboveMaximum(String),
    #[error("Field '{0}' is not an expected value")]
    NotInEnum(String),
    /// The whole value is not an object, and the output is a structure.
    #[error("Mocked result must be a JSON object.")]
    NotAnObject,
}

/// Why a value could not be checked at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("no AWS service '{0}' is known (botocore {v})", v = model::botocore_version())]
    UnknownService(String),
    #[error("the AWS service '{service}' has no operation '{action}'")]
    UnknownOperation { service: String, action: String },
}

/// Every way `value` does not fit the output of `service`'s `action` (an ARN's
/// camelCase action or the model's name), in document order; empty when it fits or
/// the operation has no output.
pub fn check_output(
    service: &str,
    action: &str,
    value: &Value,
    mode: Mode,
) -> Result<Vec<Violation>, Error> {
    let svc = model::service(service).ok_or_else(|| Error::UnknownService(service.into()))?;
    let (_, op) = svc
        .operation(action)
        .ok_or_else(|| Error::UnknownOperation {
            service: service.into(),
            action: action.into(),
        })?;
    let mut out = Vec::new();
    let Some(shape) = op.output.as_deref().and_then(|o| svc.shape(o)) else {
        return Ok(out);
    };
    if shape.kind == ShapeType::Structure && !value.is_object() {
        out.push(Violation::NotAnObject);
        return Ok(out);
    }
    Checker {
        svc: &svc,
        mode,
        out: &mut out,
    }
    .value(value, shape, "", 0);
    Ok(out)
}

struct Checker<'a> {
    svc: &'a Service,
    mode: Mode,
    out: &'a mut Vec<Violation>,
}

/// Deeper than any model nests; a recursive shape with a deep value stops here.
const MAX_DEPTH: usize = 64;

impl Checker<'_> {
    fn value(&mut self, v: &Value, shape: &Shape, field: &str, depth: usize) {
        if depth > MAX_DEPTH || shape.document {
            return;
        }
        let wrong = |expected| Violation::Type {
            field: field.to_string(),
            expected,
        };
        match shape.kind {
            ShapeType::Structure => match v {
                Value::Object(m) => self.structure(m, shape, depth),
                _ => self.out.push(wrong("an object")),
            },
            ShapeType::List => match v {
                Value::Array(items) => {
                    self.length(items.len(), shape, field);
                    if let Some(inner) =
                        shape.member.as_ref().and_then(|m| self.svc.shape(&m.shape))
                    {
                        for item in items {
                            self.value(item, inner, field, depth + 1);
                        }
                    }
                }
                _ => self.out.push(wrong("an array")),
            },
            ShapeType::Map => match v {
                Value::Object(m) => {
                    self.length(m.len(), shape, field);
                    if let Some(inner) = shape.value.as_ref().and_then(|m| self.svc.shape(&m.shape))
                    {
                        for item in m.values() {
                            self.value(item, inner, field, depth + 1);
                        }
                    }
                }
                _ => self.out.push(wrong("an object")),
            },
            ShapeType::String => match v {
                Value::String(s) => {
                    if shape
                        .enum_values
                        .as_ref()
                        .is_some_and(|e| !e.iter().any(|x| x == s))
                    {
                        self.out.push(Violation::NotInEnum(field.into()));
                    } else {
                        self.length(s.chars().count(), shape, field);
                    }
                }
                _ => self.out.push(wrong("a string")),
            },
            // Step Functions hands a blob over as text; a JSON blob (Lambda's
            // Payload) as the JSON it holds.
            ShapeType::Blob => match v {
                Value::String(s) => self.length(s.len(), shape, field),
                Value::Object(_) | Value::Array(_) => {}
                _ => self.out.push(wrong("a string")),
            },
            ShapeType::Timestamp => {
                if !(v.is_string() || v.is_number()) {
                    self.out.push(wrong("a string"));
                }
            }
            ShapeType::Integer
            | ShapeType::Long
            | ShapeType::Short
            | ShapeType::Byte
            | ShapeType::BigInteger => match v.as_f64() {
                Some(n) if v.is_i64() || v.is_u64() => self.range(n, shape, field),
                _ => self.out.push(wrong("a number")),
            },
            ShapeType::Float | ShapeType::Double | ShapeType::BigDecimal => match v.as_f64() {
                Some(n) => self.range(n, shape, field),
                None => self.out.push(wrong("a number")),
            },
            ShapeType::Boolean => {
                if !v.is_boolean() {
                    self.out.push(wrong("a boolean"));
                }
            }
            ShapeType::Other => {}
        }
    }

    fn structure(&mut self, m: &Map<String, Value>, shape: &Shape, depth: usize) {
        if self.mode == Mode::Strict {
            for r in &shape.required {
                let name = upper_first(r);
                if !m.contains_key(&name) && !m.contains_key(r) {
                    self.out.push(Violation::Missing(name));
                }
            }
        }
        for (key, v) in m {
            let member = shape
                .members
                .iter()
                .find(|(name, _)| upper_first(name) == *key || *name == key);
            if let Some(inner) = member.and_then(|(_, mem)| self.svc.shape(&mem.shape)) {
                self.value(v, inner, key, depth + 1);
            }
        }
    }

    fn length(&mut self, len: usize, shape: &Shape, field: &str) {
        let len = len as f64;
        if shape.min.is_some_and(|min| len < min) {
            self.out.push(Violation::TooShort(field.into()));
        } else if shape.max.is_some_and(|max| len > max) {
            self.out.push(Violation::TooLong(field.into()));
        }
    }

    fn range(&mut self, n: f64, shape: &Shape, field: &str) {
        if shape.min.is_some_and(|min| n < min) {
            self.out.push(Violation::BelowMinimum(field.into()));
        } else if shape.max.is_some_and(|max| n > max) {
            self.out.push(Violation::AboveMaximum(field.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn first(service: &str, action: &str, v: Value, mode: Mode) -> Option<String> {
        check_output(service, action, &v, mode)
            .unwrap()
            .first()
            .map(|v| v.to_string())
    }

    #[test]
    fn types_bounds_and_enums_as_aws_words_them() {
        let s = Mode::Strict;
        let cases = [
            (
                "kms",
                "encrypt",
                json!({"CiphertextBlob": ""}),
                "Field 'CiphertextBlob' is smaller than the minimum length",
            ),
            (
                "kms",
                "encrypt",
                json!({"CiphertextBlob": 123}),
                "Field 'CiphertextBlob' must be a string",
            ),
            (
                "lambda",
                "getFunction",
                json!({"Configuration": {"MemorySize": 127}}),
                "Field 'MemorySize' is less than the minimum value",
            ),
            (
                "lambda",
                "getFunction",
                json!({"Configuration": {"MemorySize": 32769}}),
                "Field 'MemorySize' exceeds the maximum value",
            ),
            (
                "s3",
                "getObject",
                json!({"StorageClass": "Papyrus"}),
                "Field 'StorageClass' is not an expected value",
            ),
            (
                "s3",
                "getObject",
                json!({"ContentLength": "9000"}),
                "Field 'ContentLength' must be a number",
            ),
            (
                "dynamodb",
                "PutItem",
                json!({"ConsumedCapacity": {"CapacityUnits": "1.5"}}),
                "Field 'CapacityUnits' must be a number",
            ),
            (
                "eventbridge",
                "putEvents",
                json!({"Entries": "x"}),
                "Field 'Entries' must be an array",
            ),
            (
                "eventbridge",
                "putEvents",
                json!({"Entries": [{"EventId": "a"}, {"EventId": ["b"]}]}),
                "Field 'EventId' must be a string",
            ),
            (
                "lambda",
                "invoke",
                json!({"StatusCode": "200"}),
                "Field 'StatusCode' must be a number",
            ),
            (
                "sqs",
                "sendMessage",
                json!([]),
                "Mocked result must be a JSON object.",
            ),
        ];
        for (svc, op, v, want) in cases {
            assert_eq!(
                first(svc, op, v.clone(), s).as_deref(),
                Some(want),
                "{svc}:{op} {v}"
            );
        }
    }

    #[test]
    fn unknown_members_pass_and_required_ones_only_in_strict_mode() {
        assert_eq!(
            first(
                "eventbridge",
                "putEvents",
                json!({"random": "json"}),
                Mode::Strict
            ),
            None
        );
        assert_eq!(
            first(
                "lambda",
                "invoke",
                json!({"Payload": {"a": 1}, "SdkHttpMetadata": {}}),
                Mode::Strict
            ),
            None
        );
        // GetObject's output requires nothing; Lambda's GetFunctionConcurrency neither;
        // STS AssumeRole's Credentials require their four members.
        let creds = json!({"Credentials": {"AccessKeyId": "AKIAEXAMPLE12345"}});
        assert_eq!(
            first("sts", "assumeRole", creds.clone(), Mode::Strict).as_deref(),
            Some("Required field 'SecretAccessKey' is missing")
        );
        assert_eq!(first("sts", "assumeRole", creds, Mode::Present), None);
    }

    #[test]
    fn unknown_service_or_operation_is_an_error() {
        assert!(matches!(
            check_output("nosuch", "x", &json!({}), Mode::Strict),
            Err(Error::UnknownService(_))
        ));
        assert!(matches!(
            check_output("s3", "noSuchThing", &json!({}), Mode::Strict),
            Err(Error::UnknownOperation { .. })
        ));
    }
}
