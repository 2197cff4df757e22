//! The expression layer of ASL: JSONPath and reference paths, payload templates,
//! intrinsic functions, Choice rules and JSONata.
//!
//! Everything here is compiled once, when a definition loads, and evaluated many
//! times against a [`Scope`]. Evaluation never does I/O and never reads a clock or
//! randomness directly: both come in through [`Entropy`] and the context object.

pub mod choice;
pub mod intrinsic;
pub mod jsonata;
pub mod jsonpath;
pub mod template;

use serde_json::Value;
use std::cell::Cell;

pub use jsonpath::{Path, PathError, Root};

/// An ASL error raised while evaluating: it flows through Retry and Catch as data.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error: String,
    pub cause: Option<String>,
}

impl Failure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            cause: Some(cause.into()),
        }
    }
    pub fn runtime(cause: impl Into<String>) -> Failure {
        Failure::new(errors::RUNTIME, cause)
    }
    pub fn intrinsic(cause: impl Into<String>) -> Failure {
        Failure::new(errors::INTRINSIC_FAILURE, cause)
    }
    pub fn query(cause: impl Into<String>) -> Failure {
        Failure::new(errors::QUERY_EVALUATION_ERROR, cause)
    }
}

/// The predefined error names.
pub mod errors {
    pub const ALL: &str = "States.ALL";
    pub const TIMEOUT: &str = "States.Timeout";
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    pub const TASK_FAILED: &str = "States.TaskFailed";
    pub const PERMISSIONS: &str = "States.Permissions";
    pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
    pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
    pub const BRANCH_FAILED: &str = "States.BranchFailed";
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
    pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
    pub const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
    pub const RESULT_WRITER_FAILED: &str = "States.ResultWriterFailed";
    pub const RUNTIME: &str = "States.Runtime";
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
    pub const QUERY_EVALUATION_ERROR: &str = "States.QueryEvaluationError";
}

/// Randomness, injected so that evaluation stays deterministic under test.
pub trait Entropy {
    fn next_u64(&self) -> u64;
}

/// A seeded splitmix64 generator: the default [`Entropy`].
#[derive(Debug)]
pub struct SplitMix(Cell<u64>);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(Cell::new(seed))
    }
}

impl Entropy for SplitMix {
    fn next_u64(&self) -> u64 {
        let mut z = self.0.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.0.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A version 4 UUID made from injected randomness.
pub fn uuid_v4(e: &dyn Entropy) -> String {
    let (a, b) = (e.next_u64(), e.next_u64());
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        push_hex(&mut out, *b);
    }
    out
}

/// Lowercase hex, two digits per byte.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        push_hex(&mut out, *b);
    }
    out
}

// One `format!` per byte was an allocation each: 17 per execution name.
fn push_hex(out: &mut String, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(DIGITS[usize::from(b >> 4)] as char);
    out.push(DIGITS[usize::from(b & 15)] as char);
}

/// Workflow variables visible to an expression.
pub trait Vars {
    fn get_var(&self, name: &str) -> Option<Value>;
    /// Every visible variable, innermost scope winning (for JSONata bindings).
    fn all_vars(&self) -> Vec<(String, Value)>;
}

impl Vars for () {
    fn get_var(&self, _: &str) -> Option<Value> {
        None
    }
    fn all_vars(&self) -> Vec<(String, Value)> {
        Vec::new()
    }
}

/// What an expression can see.
pub struct Scope<'a> {
    pub input: &'a Value,
    pub context: &'a Value,
    pub vars: &'a dyn Vars,
    pub entropy: &'a dyn Entropy,
}

impl Scope<'_> {
    /// Resolves a compiled path against its root. `None` means it matched nothing.
    pub fn resolve(&self, path: &Path) -> Option<Value> {
        match path.root() {
            Root::Input => path.select(self.input),
            Root::Context => path.select(self.context),
            Root::Var(name) => path.select(&self.vars.get_var(name)?),
        }
    }

    /// Resolves a path that must match, with AWS's error for a field that does not.
    pub fn resolve_field(&self, path: &Path, field: &str) -> Result<Value, Failure> {
        if let Some(why) = path.unevaluable() {
            return Err(Failure::runtime(format!(
                "Invalid path '{}' : {why}",
                path.text()
            )));
        }
        self.resolve(path).ok_or_else(|| {
            let source = match path.root() {
                Root::Context => self.context,
                _ => self.input,
            };
            Failure::runtime(format!(
                "The JSONPath '{}' specified for the field '{}' could not be found in the input '{}'",
                path.text(),
                field,
                compact(source)
            ))
        })
    }
}

/// The compact JSON text of a value, as AWS quotes values in causes.
pub fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The JSON type name AWS uses in messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Is this string a JSONata expression, `{% ... %}`?
pub fn is_jsonata_expr(s: &str) -> bool {
    s.starts_with("{%") && s.ends_with("%}") && s.len() >= 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_in_the_canonical_form() {
        let e = SplitMix::new(7);
        let u = uuid_v4(&e);
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{u}"
        );
        assert!(u
            .chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(parts[2].starts_with('4'), "{u}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{u}");
        assert_ne!(u, uuid_v4(&e));
        assert_eq!(hex(&[0, 0xab, 0x0f]), "00ab0f");
    }
}
