//! The `States.*` intrinsic functions: parsed once, evaluated against a [`Scope`].

use crate::{compact, type_name, Failure, Path, Scope};
use base64::Engine as _;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Literal(Value),
    Path(Path),
    Call(Call),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub func: Func,
    pub args: Vec<Arg>,
    text: String,
}

macro_rules! funcs {
    ($($v:ident = $n:literal),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Func { $($v),* }
        impl Func {
            pub fn from_name(s: &str) -> Option<Func> {
                match s { $($n => Some(Func::$v),)* _ => None }
            }
            pub fn name(self) -> &'static str {
                match self { $(Func::$v => $n),* }
            }
        }
    };
}

funcs! {
    Format = "States.Format",
    StringToJson = "States.StringToJson",
    JsonToString = "States.JsonToString",
    Array = "States.Array",
    ArrayPartition = "States.ArrayPartition",
    ArrayContains = "States.ArrayContains",
    ArrayRange = "States.ArrayRange",
    ArrayGetItem = "States.ArrayGetItem",
    ArrayLength = "States.ArrayLength",
    ArrayUnique = "States.ArrayUnique",
    Base64Encode = "States.Base64Encode",
    Base64Decode = "States.Base64Decode",
    Hash = "States.Hash",
    JsonMerge = "States.JsonMerge",
    MathRandom = "States.MathRandom",
    MathAdd = "States.MathAdd",
    StringSplit = "States.StringSplit",
    Uuid = "States.UUID",
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid intrinsic function {text:?}: {msg}")]
pub struct IntrinsicError {
    pub text: String,
    pub msg: String,
}

/// Does this string look like an intrinsic call (as opposed to a path)?
pub fn looks_like_call(s: &str) -> bool {
    s.trim_start().starts_with("States.")
}

impl Call {
    pub fn parse(text: &str) -> Result<Call, IntrinsicError> {
        let mut p = P {
            s: text,
            i: 0,
            depth: 0,
        };
        let call = p.call().map_err(|msg| IntrinsicError {
            text: text.to_string(),
            msg,
        })?;
        p.ws();
        if p.i != text.len() {
            return Err(IntrinsicError {
                text: text.to_string(),
                msg: format!("unexpected text after the call at offset {}", p.i),
            });
        }
        Ok(call)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every path that the call reads, for validation.
    pub fn paths(&self) -> Vec<&Path> {
        let mut out = Vec::new();
        for a in &self.args {
            match a {
                Arg::Path(p) => out.push(p),
                Arg::Call(c) => out.extend(c.paths()),
                Arg::Literal(_) => {}
            }
        }
        out
    }

    pub fn eval(&self, scope: &Scope) -> Result<Value, Failure> {
        let mut args = Vec::with_capacity(self.args.len());
        for a in &self.args {
            args.push(match a {
                Arg::Literal(v) => v.clone(),
                Arg::Path(p) => scope.resolve(p).ok_or_else(|| {
                    Failure::runtime(format!(
                        "The JSONPath '{}' could not be found in the input '{}'",
                        p.text(),
                        compact(scope.input)
                    ))
                })?,
                Arg::Call(c) => c.eval(scope)?,
            });
        }
        apply(self.func, &args, scope)
            .map_err(|msg| Failure::intrinsic(format!("Invalid arguments in {}: {msg}", self.text)))
    }
}

struct P<'a> {
    s: &'a str,
    i: usize,
    depth: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.s[self.i..].starts_with(' ') {
            self.i += 1
        }
    }
    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }
    fn call(&mut self) -> Result<Call, String> {
        self.depth += 1;
        if self.depth > 10 {
            return Err("intrinsic functions nest at most 10 deep".into());
        }
        self.ws();
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            self.i += 1
        }
        let name = &self.s[start..self.i];
        let func = Func::from_name(name).ok_or_else(|| format!("unknown function {name:?}"))?;
        self.ws();
        if self.peek() != Some('(') {
            return Err(format!("expected '(' after {name}"));
        }
        self.i += 1;
        let mut args = Vec::new();
        self.ws();
        if self.peek() == Some(')') {
            self.i += 1;
        } else {
            loop {
                args.push(self.arg()?);
                self.ws();
                match self.peek() {
                    Some(',') => self.i += 1,
                    Some(')') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(format!("expected ',' or ')' at offset {}", self.i)),
                }
            }
        }
        self.depth -= 1;
        check_arity(func, args.len())?;
        Ok(Call {
            func,
            args,
            text: self.s[start..self.i].to_string(),
        })
    }

    fn arg(&mut self) -> Result<Arg, String> {
        self.ws();
        match self.peek() {
            Some('\'') => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    let c = self.peek().ok_or("unterminated string literal")?;
                    self.i += c.len_utf8();
                    match c {
                        '\'' => break,
                        '\\' => {
                            let e = self.peek().ok_or("unterminated string literal")?;
                            self.i += e.len_utf8();
                            // `\{` and `\}` keep their backslash so that Format can tell them from placeholders.
                            if e == '{' || e == '}' {
                                out.push('\\');
                            }
                            out.push(e);
                        }
                        c => out.push(c),
                    }
                }
                Ok(Arg::Literal(Value::String(out)))
            }
            Some('$') => {
                let start = self.i;
                let mut depth = 0i32;
                let mut quote: Option<char> = None;
                while let Some(c) = self.peek() {
                    match (quote, c) {
                        (Some(q), c) if c == q => quote = None,
                        (Some(_), _) => {}
                        (None, '\'' | '"') => quote = Some(c),
                        (None, '[' | '(') => depth += 1,
                        (None, ']') => depth -= 1,
                        (None, ')') if depth == 0 => break,
                        (None, ')') => depth -= 1,
                        (None, ',') if depth == 0 => break,
                        _ => {}
                    }
                    self.i += c.len_utf8();
                }
                let text = self.s[start..self.i].trim_end();
                Path::parse(text).map(Arg::Path).map_err(|e| e.to_string())
            }
            Some('S') => Ok(Arg::Call(self.call()?)),
            Some(_) => {
                let start = self.i;
                while let Some(c) = self.peek().filter(|&c| c != ',' && c != ')') {
                    self.i += c.len_utf8()
                }
                let lit = self.s[start..self.i].trim();
                match serde_json::from_str::<Value>(lit) {
                    Ok(v) if !v.is_object() && !v.is_array() && !v.is_string() => {
                        Ok(Arg::Literal(v))
                    }
                    _ => Err(format!("invalid literal {lit:?}")),
                }
            }
            None => Err("expected an argument".into()),
        }
    }
}

fn check_arity(f: Func, n: usize) -> Result<(), String> {
    use Func::*;
    let ok = match f {
        Format => n >= 1,
        StringToJson | JsonToString | ArrayLength | ArrayUnique | Base64Encode | Base64Decode => {
            n == 1
        }
        Array => true,
        ArrayPartition | ArrayContains | ArrayGetItem | Hash | MathAdd | StringSplit => n == 2,
        ArrayRange | JsonMerge => n == 3,
        MathRandom => n == 2 || n == 3,
        Uuid => n == 0,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{} does not take {n} argument(s)", f.name()))
    }
}

fn int_arg(v: &Value, what: &str) -> Result<i64, String> {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 => Ok(f as i64),
        _ => Err(format!("{what} must be an integer, got {}", compact(v))),
    }
}

fn str_arg<'v>(v: &'v Value, what: &str) -> Result<&'v str, String> {
    v.as_str()
        .ok_or_else(|| format!("{what} must be a string, got {}", type_name(v)))
}

fn arr_arg<'v>(v: &'v Value, what: &str) -> Result<&'v Vec<Value>, String> {
    v.as_array()
        .ok_or_else(|| format!("{what} must be an array, got {}", type_name(v)))
}

/// Java's `Math.round`: halves go up.
fn java_round(f: f64) -> i64 {
    (f + 0.5).floor() as i64
}

/// How Java's `toString` renders a value inside `States.Format`.
fn java_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(java_string).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{k}={}", java_string(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => compact(other),
    }
}

fn format(template: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut it = template.chars().peekable();
    let mut n = 0;
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.next() {
                Some(e) => out.push(e),
                None => out.push('\\'),
            },
            '{' if it.peek() == Some(&'}') => {
                it.next();
                let a = args
                    .get(n)
                    .ok_or("the number of arguments does not match the number of placeholders")?;
                out.push_str(&java_string(a));
                n += 1;
            }
            c => out.push(c),
        }
    }
    if n != args.len() {
        return Err("the number of arguments does not match the number of placeholders".into());
    }
    Ok(out)
}

pub(crate) fn hash(data: &str, alg: &str) -> Result<String, String> {
    use sha2::Digest;
    let bytes = data.as_bytes();
    let digest: Vec<u8> = match alg {
        "MD5" => md5::Md5::digest(bytes).to_vec(),
        "SHA-1" => sha1::Sha1::digest(bytes).to_vec(),
        "SHA-256" => sha2::Sha256::digest(bytes).to_vec(),
        "SHA-384" => sha2::Sha384::digest(bytes).to_vec(),
        "SHA-512" => sha2::Sha512::digest(bytes).to_vec(),
        other => {
            return Err(format!(
                "unsupported hash algorithm {other:?}: use MD5, SHA-1, SHA-256, SHA-384 or SHA-512"
            ))
        }
    };
    Ok(crate::hex(&digest))
}

pub(crate) fn partition(arr: &[Value], size: i64) -> Result<Value, String> {
    if size <= 0 {
        return Err("the chunk size must be greater than 0".into());
    }
    Ok(Value::Array(
        arr.chunks(size as usize)
            .map(|c| Value::Array(c.to_vec()))
            .collect(),
    ))
}

pub(crate) fn range(start: i64, end: i64, step: i64) -> Result<Value, String> {
    if step == 0 {
        return Err("the step must not be 0".into());
    }
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i <= end) || (step < 0 && i >= end) {
        out.push(Value::from(i));
        if out.len() > 1000 {
            return Err("the result has more than 1000 items".into());
        }
        i += step;
    }
    Ok(Value::Array(out))
}

fn apply(f: Func, a: &[Value], scope: &Scope) -> Result<Value, String> {
    use Func::*;
    Ok(match f {
        Format => Value::String(format(str_arg(&a[0], "the template")?, &a[1..])?),
        StringToJson => {
            let s = str_arg(&a[0], "the argument")?;
            if s.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(s).map_err(|e| format!("the string is not JSON: {e}"))?
            }
        }
        JsonToString => Value::String(compact(&a[0])),
        Array => Value::Array(a.to_vec()),
        ArrayPartition => partition(
            arr_arg(&a[0], "the first argument")?,
            int_arg(&a[1], "the chunk size")?,
        )?,
        ArrayContains => Value::Bool(arr_arg(&a[0], "the first argument")?.contains(&a[1])),
        ArrayRange => range(
            int_arg(&a[0], "the start")?,
            int_arg(&a[1], "the end")?,
            int_arg(&a[2], "the step")?,
        )?,
        ArrayGetItem => {
            let arr = arr_arg(&a[0], "the first argument")?;
            let i = int_arg(&a[1], "the index")?;
            usize::try_from(i)
                .ok()
                .and_then(|i| arr.get(i))
                .cloned()
                .ok_or_else(|| format!("index {i} is out of bounds"))?
        }
        ArrayLength => Value::from(arr_arg(&a[0], "the argument")?.len()),
        ArrayUnique => {
            let mut out: Vec<Value> = Vec::new();
            for v in arr_arg(&a[0], "the argument")? {
                if !out.contains(v) {
                    out.push(v.clone())
                }
            }
            Value::Array(out)
        }
        Base64Encode => {
            let s = str_arg(&a[0], "the argument")?;
            if s.chars().count() > 10_000 {
                return Err("the input is over 10000 characters".into());
            }
            Value::String(base64::engine::general_purpose::STANDARD.encode(s))
        }
        Base64Decode => {
            let s = str_arg(&a[0], "the argument")?;
            if s.chars().count() > 10_000 {
                return Err("the input is over 10000 characters".into());
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("invalid base64: {e}"))?;
            Value::String(
                String::from_utf8(bytes)
                    .map_err(|_| "the decoded data is not UTF-8".to_string())?,
            )
        }
        Hash => {
            let data = match &a[0] {
                Value::String(s) => s.clone(),
                other => compact(other),
            };
            if data.chars().count() > 10_000 {
                return Err("the input is over 10000 characters".into());
            }
            Value::String(hash(&data, str_arg(&a[1], "the algorithm")?)?)
        }
        JsonMerge => {
            if a[2] != Value::Bool(false) {
                return Err(
                    "only shallow merge is supported: the third argument must be false".into(),
                );
            }
            let (Value::Object(l), Value::Object(r)) = (&a[0], &a[1]) else {
                return Err("both arguments must be objects".into());
            };
            let mut m: Map<String, Value> = l.clone();
            for (k, v) in r {
                m.insert(k.clone(), v.clone());
            }
            Value::Object(m)
        }
        MathRandom => {
            let lo = java_round(a[0].as_f64().ok_or("the start must be a number")?);
            let hi = java_round(a[1].as_f64().ok_or("the end must be a number")?);
            if hi <= lo {
                return Err("the end must be greater than the start".into());
            }
            let r = match a.get(2) {
                Some(seed) => JavaRandom::new(int_arg(seed, "the seed")?).next_f64(),
                None => (scope.entropy.next_u64() >> 11) as f64 / (1u64 << 53) as f64,
            };
            Value::from(lo + ((hi - lo) as f64 * r) as i64)
        }
        MathAdd => {
            let x = a[0].as_f64().ok_or("the first argument must be a number")?;
            let y = a[1]
                .as_f64()
                .ok_or("the second argument must be a number")?;
            Value::from(java_round(x) + java_round(y))
        }
        StringSplit => {
            let s = str_arg(&a[0], "the first argument")?;
            let d = str_arg(&a[1], "the delimiter")?;
            Value::Array(
                s.split(|c| d.contains(c))
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            )
        }
        Uuid => Value::String(crate::uuid_v4(scope.entropy)),
    })
}

/// java.util.Random, because AWS's `$random(seed)` follows its sequence.
pub struct JavaRandom(u64);

impl JavaRandom {
    const MUL: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;
    pub fn new(seed: i64) -> JavaRandom {
        JavaRandom((seed as u64 ^ Self::MUL) & Self::MASK)
    }
    fn next(&mut self, bits: u32) -> u64 {
        self.0 = (self.0.wrapping_mul(Self::MUL).wrapping_add(0xB)) & Self::MASK;
        self.0 >> (48 - bits)
    }
    pub fn next_f64(&mut self) -> f64 {
        (((self.next(26)) << 27) + self.next(27)) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix;
    use serde_json::json;

    fn run(expr: &str, input: Value) -> Result<Value, Failure> {
        let e = SplitMix::new(1);
        let ctx = json!({});
        Call::parse(expr).unwrap().eval(&Scope {
            input: &input,
            context: &ctx,
            vars: &(),
            entropy: &e,
        })
    }

    #[test]
    fn evaluates() {
        assert_eq!(
            run(
                "States.Format('a {} b {}', $.x, 'y')",
                json!({"x": {"k": [1]}})
            )
            .unwrap(),
            json!("a {k=[1]} b y")
        );
        assert_eq!(
            run("States.Format('\\{\\}')", json!({})).unwrap(),
            json!("{}")
        );
        assert_eq!(
            run("States.MathAdd(1.5, -0.5)", json!({})).unwrap(),
            json!(2)
        );
        assert_eq!(
            run("States.StringSplit('a,,b', ',')", json!({})).unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(
            run("States.ArrayLength(States.Array(1, 2, null))", json!({})).unwrap(),
            json!(3)
        );
        assert_eq!(
            run("States.Hash('input data', 'MD5')", json!({})).unwrap(),
            json!("812f45842bc6d66ee14572ce20db8e86")
        );
        assert_eq!(
            run("States.UUID()", json!({}))
                .unwrap()
                .as_str()
                .unwrap()
                .len(),
            36
        );
        assert_eq!(
            run("States.Format('{}')", json!({})).unwrap_err().error,
            "States.IntrinsicFailure"
        );
        assert_eq!(
            run("States.ArrayGetItem($.a, 5)", json!({"a": []}))
                .unwrap_err()
                .error,
            "States.IntrinsicFailure"
        );
    }

    #[test]
    fn rejects_bad_calls() {
        for bad in [
            "States.Nope()",
            "States.Format(",
            "States.UUID(1)",
            "States.Array(1,",
            "States.Array('x) ",
        ] {
            assert!(Call::parse(bad).is_err(), "{bad}");
        }
    }
}
