//! JSONata expressions (`{% ... %}`) via `jsonata-core`, plus the Step Functions extras.

use crate::{Entropy, Failure, SplitMix};
use jsonata_core::ast::AstNode;
use jsonata_core::evaluator::{Context, Evaluator, EvaluatorError};
use jsonata_core::value::JValue;
use serde_json::Value;

/// A compiled JSONata expression.
#[derive(Debug, Clone)]
pub struct Expr {
    text: String,
    ast: AstNode,
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// The `$states` variable and the workflow variables an expression sees.
pub struct Bindings<'a> {
    pub states: Value,
    pub vars: &'a dyn crate::Vars,
    pub entropy: &'a dyn Entropy,
    /// The time of the event being handled: `$now()` and `$millis()` read it, never
    /// the real clock, so a replay evaluates them to what they were.
    pub now_ms: i64,
}

/// Strips `{% %}` and parses. `s` must be a full `{% ... %}` string.
pub fn compile(s: &str) -> Result<Expr, String> {
    let inner = s
        .strip_prefix("{%")
        .and_then(|x| x.strip_suffix("%}"))
        .ok_or("a JSONata expression must be written as {% ... %}")?;
    let text = inner.trim().to_string();
    let ast = jsonata_core::parser::parse(&text)
        .map_err(|e| format!("invalid JSONata expression {text:?}: {e}"))?;
    Ok(Expr { text, ast })
}

fn ev_err(msg: impl Into<String>) -> EvaluatorError {
    EvaluatorError::EvaluationError(msg.into())
}

fn to_json(v: &JValue) -> Value {
    integral(Value::from(v))
}

/// JSONata numbers are doubles; whole ones print as integers, as AWS prints them.
fn integral(v: Value) -> Value {
    match v {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
                Value::from(f as i64)
            }
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(integral).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, integral(v))).collect()),
        v => v,
    }
}

fn num_arg(args: &[JValue], i: usize, f: &str) -> Result<i64, EvaluatorError> {
    match args.get(i).and_then(|v| v.as_f64()) {
        Some(x) if x.fract() == 0.0 => Ok(x as i64),
        _ => Err(ev_err(format!(
            "{f}: argument {} must be an integer",
            i + 1
        ))),
    }
}

fn install_extras(
    ev: &mut Evaluator,
    entropy: &dyn Entropy,
    now_ms: i64,
) -> Result<(), EvaluatorError> {
    ev.register_fn("partition", |args: &[JValue]| {
        let arr = args
            .first()
            .map(to_json)
            .and_then(|v| v.as_array().cloned())
            .ok_or_else(|| ev_err("$partition: the first argument must be an array"))?;
        let size = num_arg(args, 1, "$partition")?;
        crate::intrinsic::partition(&arr, size)
            .map(JValue::from)
            .map_err(ev_err)
    })?;
    ev.register_fn("range", |args: &[JValue]| {
        let v = crate::intrinsic::range(
            num_arg(args, 0, "$range")?,
            num_arg(args, 1, "$range")?,
            num_arg(args, 2, "$range")?,
        )
        .map_err(ev_err)?;
        // A sequence, so that one item unwraps to itself as JSONata does.
        let items = v
            .as_array()
            .map(|a| a.iter().cloned().map(JValue::from).collect())
            .unwrap_or_default();
        Ok(JValue::sequence(items))
    })?;
    ev.register_fn("hash", |args: &[JValue]| {
        let data = args
            .first()
            .and_then(|v| v.as_str())
            .ok_or_else(|| ev_err("$hash: the first argument must be a string"))?;
        let alg = args.get(1).and_then(|v| v.as_str()).unwrap_or("SHA-256");
        crate::intrinsic::hash(data, alg)
            .map(JValue::from)
            .map_err(ev_err)
    })?;
    ev.register_fn("parse", |args: &[JValue]| {
        let s = args
            .first()
            .and_then(|v| v.as_str())
            .ok_or_else(|| ev_err("$parse: the argument must be a string"))?;
        let v: Value = serde_json::from_str(s).map_err(|e| ev_err(format!("$parse: {e}")))?;
        Ok(JValue::from(v))
    })?;
    let rng = SplitMix::new(entropy.next_u64());
    let seed_uuid = SplitMix::new(entropy.next_u64());
    let shuffler = SplitMix::new(entropy.next_u64());
    ev.register_fn_override("millis", move |_: &[JValue]| {
        Ok(JValue::from(now_ms as f64))
    })?;
    ev.register_fn_override("now", move |args: &[JValue]| {
        // $now(picture, timezone) is $fromMillis of the injected time.
        let mut ctx = Context::new();
        ctx.bind("m".to_string(), JValue::from(now_ms as f64));
        ctx.bind(
            "p".to_string(),
            args.first().cloned().unwrap_or(JValue::Undefined),
        );
        ctx.bind(
            "t".to_string(),
            args.get(1).cloned().unwrap_or(JValue::Undefined),
        );
        let ast = jsonata_core::parser::parse("$fromMillis($m, $p, $t)")
            .map_err(|e| ev_err(e.to_string()))?;
        Evaluator::with_context(ctx).evaluate(&ast, &JValue::Undefined)
    })?;
    ev.register_fn_override("shuffle", move |args: &[JValue]| {
        let mut items: Vec<Value> = match args.first().map(Value::from) {
            Some(Value::Array(a)) => a,
            Some(Value::Null) | None => return Ok(JValue::Undefined),
            Some(one) => vec![one],
        };
        // Fisher-Yates on the injected entropy.
        for i in (1..items.len()).rev() {
            let j = (shuffler.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
        Ok(JValue::from(Value::Array(items)))
    })?;
    ev.register_fn("uuid", move |_: &[JValue]| {
        Ok(JValue::from(crate::uuid_v4(&seed_uuid)))
    })?;
    ev.register_fn_override("random", move |args: &[JValue]| {
        let r = match args.first() {
            Some(s) => crate::intrinsic::JavaRandom::new(
                s.as_f64()
                    .ok_or_else(|| ev_err("$random: the seed must be a number"))?
                    as i64,
            )
            .next_f64(),
            None => (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64,
        };
        Ok(JValue::from(r))
    })?;
    Ok(())
}

/// The outcome of an evaluation: `None` is JSONata's undefined.
pub type Evaluated = Option<Value>;

/// jsonata-core names an unknown function in T1006 (`...: $name`); jsonata-js, whose
/// messages AWS gives, does not.
fn aws_message(message: &str) -> &str {
    const T1006: &str = "T1006: Attempted to invoke a non-function";
    if message.starts_with(T1006) {
        T1006
    } else {
        message
    }
}

impl Expr {
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates; `field` names the place for AWS-style error causes.
    pub fn eval(&self, b: &Bindings, field: &str) -> Result<Evaluated, Failure> {
        let mut ctx = Context::new();
        for (k, v) in b.vars.all_vars() {
            ctx.bind(k, JValue::from(v));
        }
        ctx.bind("states".to_string(), JValue::from(b.states.clone()));
        let mut ev = Evaluator::with_context(ctx);
        install_extras(&mut ev, b.entropy, b.now_ms).map_err(|e| Failure::query(e.to_string()))?;
        let input = b.states.get("input").cloned().unwrap_or(Value::Null);
        let out = ev.evaluate(&self.ast, &JValue::from(input)).map_err(|e| {
            Failure::query(format!("The JSONata expression '{}' specified for the field '{}' threw an error during evaluation. {}", self.text, field, aws_message(e.message())))
        })?;
        if out.is_undefined() {
            return Ok(None);
        }
        if out.is_function() || out.is_lambda() || out.is_builtin() || out.is_regex() {
            return Err(Failure::query(format!("The JSONata expression '{}' specified for the field '{}' returned an unsupported result type.", self.text, field)));
        }
        Ok(Some(to_json(&out)))
    }

    /// Evaluates and insists on a value.
    pub fn eval_defined(&self, b: &Bindings, field: &str) -> Result<Value, Failure> {
        self.eval(b, field)?.ok_or_else(|| {
            Failure::query(format!("The JSONata expression '{}' specified for the field '{}' returned nothing (undefined).", self.text, field))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(s: &str, input: Value) -> Result<Evaluated, Failure> {
        let e = SplitMix::new(7);
        compile(s).unwrap().eval(
            &Bindings {
                states: json!({"input": input}),
                vars: &(),
                entropy: &e,
                now_ms: 1_700_000_000_123,
            },
            "Output",
        )
    }

    #[test]
    fn time_and_shuffles_come_from_the_bindings_not_the_machine() {
        assert_eq!(
            eval("{% $millis() %}", json!({})).unwrap(),
            Some(json!(1_700_000_000_123i64))
        );
        assert_eq!(
            eval("{% $now() %}", json!({})).unwrap(),
            Some(json!("2023-11-14T22:13:20.123Z"))
        );
        assert_eq!(
            eval("{% $now('[Y0001]-[M01]-[D01]') %}", json!({})).unwrap(),
            Some(json!("2023-11-14"))
        );
        let a = eval("{% $shuffle([1,2,3,4,5,6,7,8]) %}", json!({})).unwrap();
        let b = eval("{% $shuffle([1,2,3,4,5,6,7,8]) %}", json!({})).unwrap();
        assert_eq!(a, b, "the same entropy shuffles the same way");
        let mut sorted: Vec<i64> = a
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        sorted.sort();
        assert_eq!(sorted, (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn an_unknown_function_gives_jsonata_js_words() {
        let f = eval("{% $randomSeeded(1) %}", json!({})).unwrap_err();
        assert!(
            f.cause
                .as_deref()
                .unwrap_or_default()
                .ends_with("during evaluation. T1006: Attempted to invoke a non-function"),
            "{f:?}"
        );
    }

    #[test]
    fn evaluates_with_extras() {
        assert_eq!(
            eval("{% $states.input.a + 1 %}", json!({"a": 1})).unwrap(),
            Some(json!(2))
        );
        assert_eq!(
            eval("{% $partition([1,2,3], 2) %}", json!({})).unwrap(),
            Some(json!([[1, 2], [3]]))
        );
        assert_eq!(
            eval("{% $range(0, 4, 2) %}", json!({})).unwrap(),
            Some(json!([0, 2, 4]))
        );
        assert_eq!(
            eval("{% $parse('{\"a\":1}') %}", json!({})).unwrap(),
            Some(json!({"a": 1}))
        );
        assert_eq!(
            eval("{% $random(42) %}", json!({})).unwrap(),
            Some(json!(0.7275636800328681))
        );
        assert_eq!(eval("{% $nothing %}", json!({})).unwrap(), None);
        assert!(
            eval("{% $uuid() %}", json!({}))
                .unwrap()
                .unwrap()
                .as_str()
                .unwrap()
                .len()
                == 36
        );
        assert!(compile("{% 1 + %}").is_err());
    }
}
