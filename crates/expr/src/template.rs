//! Payload templates: `Parameters`, `ResultSelector`, `ItemSelector` (keys ending in `.$`),
//! and JSONata `Arguments`/`Output` (strings holding `{% %}`).

use crate::intrinsic::{looks_like_call, Call};
use crate::jsonata::{self, Bindings, Expr};
use crate::{Failure, Path, Scope};
use serde_json::{Map, Value};

/// Which query language a field is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    JsonPath,
    Jsonata,
}

/// A JSON value in which some leaves are evaluated.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    Literal(Value),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
    /// `"key.$": "$.path"`; the String is the field name with its `.$`.
    Path(Path, String),
    Call(Call),
    Jsonata(Expr),
}

/// A problem found while compiling: (JSON pointer below the template, message).
pub type Problem = (String, String);

fn escape_pointer(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

/// Compiles a `.$` expression string (a path or an intrinsic call).
pub fn compile_dollar(s: &str, field: &str) -> Result<Template, String> {
    if looks_like_call(s) {
        Call::parse(s)
            .map(Template::Call)
            .map_err(|e| e.to_string())
    } else {
        Path::parse(s)
            .map(|p| Template::Path(p, field.to_string()))
            .map_err(|e| e.to_string())
    }
}

impl Template {
    pub fn compile(v: &Value, lang: Lang, ptr: &str, problems: &mut Vec<Problem>) -> Template {
        match (v, lang) {
            (Value::String(s), Lang::Jsonata) if crate::is_jsonata_expr(s) => {
                match jsonata::compile(s) {
                    Ok(e) => Template::Jsonata(e),
                    Err(m) => {
                        problems.push((ptr.to_string(), m));
                        Template::Literal(v.clone())
                    }
                }
            }
            (Value::Object(m), _) => {
                let mut fields = Vec::with_capacity(m.len());
                for (k, child) in m {
                    let cptr = format!("{ptr}/{}", escape_pointer(k));
                    // `a` and `a.$` would both write `a`: the ASL spec forbids it.
                    if let (Lang::JsonPath, Some(name)) = (lang, k.strip_suffix(".$")) {
                        if m.contains_key(name) {
                            problems.push((
                                cptr.clone(),
                                format!(
                                    "the field {name:?} is given twice: as {name:?} and as {k:?}"
                                ),
                            ));
                        }
                    }
                    match (lang, k.strip_suffix(".$")) {
                        (Lang::JsonPath, Some(name)) => {
                            let t = match child.as_str() {
                                Some(s) => compile_dollar(s, k).unwrap_or_else(|m| {
                                    problems.push((cptr.clone(), m));
                                    Template::Literal(Value::Null)
                                }),
                                None => {
                                    problems.push((cptr.clone(), format!("the value of {k:?} must be a string holding a path or an intrinsic function")));
                                    Template::Literal(Value::Null)
                                }
                            };
                            fields.push((name.to_string(), t));
                        }
                        _ => fields
                            .push((k.clone(), Template::compile(child, lang, &cptr, problems))),
                    }
                }
                Template::Object(fields)
            }
            (Value::Array(a), _) => Template::Array(
                a.iter()
                    .enumerate()
                    .map(|(i, c)| Template::compile(c, lang, &format!("{ptr}/{i}"), problems))
                    .collect(),
            ),
            _ => Template::Literal(v.clone()),
        }
    }

    /// Evaluates a JSONPath-mode template.
    pub fn eval(&self, scope: &Scope) -> Result<Value, Failure> {
        match self {
            Template::Literal(v) => Ok(v.clone()),
            Template::Object(fields) => {
                let mut m = Map::with_capacity(fields.len());
                for (k, t) in fields {
                    m.insert(k.clone(), t.eval(scope)?);
                }
                Ok(Value::Object(m))
            }
            Template::Array(items) => items
                .iter()
                .map(|t| t.eval(scope))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Template::Path(p, field) => scope.resolve_field(p, field),
            Template::Call(c) => c.eval(scope),
            Template::Jsonata(e) => Err(Failure::runtime(format!(
                "JSONata expression '{}' used in a JSONPath state",
                e.text()
            ))),
        }
    }

    /// Evaluates a JSONata-mode template. `field` is the top field name (`Output`, `Arguments`, ...).
    pub fn eval_jsonata(&self, b: &Bindings, field: &str) -> Result<Value, Failure> {
        match self {
            Template::Literal(v) => Ok(v.clone()),
            Template::Object(fields) => {
                let mut m = Map::with_capacity(fields.len());
                for (k, t) in fields {
                    m.insert(k.clone(), t.eval_jsonata(b, &format!("{field}/{k}"))?);
                }
                Ok(Value::Object(m))
            }
            Template::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, t)| t.eval_jsonata(b, &format!("{field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Template::Jsonata(e) => e.eval_defined(b, field),
            Template::Path(..) | Template::Call(_) => Err(Failure::runtime(
                "JSONPath expression used in a JSONata state",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix;
    use serde_json::json;

    #[test]
    fn evaluates_templates() {
        let mut problems = Vec::new();
        let t = Template::compile(
            &json!({"a.$": "$.x", "b": [{"c.$": "States.Array($.x)"}], "d": 1}),
            Lang::JsonPath,
            "/Parameters",
            &mut problems,
        );
        assert!(problems.is_empty());
        let (input, ctx, e) = (json!({"x": 5}), json!({}), SplitMix::new(0));
        let s = Scope {
            input: &input,
            context: &ctx,
            vars: &(),
            entropy: &e,
        };
        assert_eq!(
            t.eval(&s).unwrap(),
            json!({"a": 5, "b": [{"c": [5]}], "d": 1})
        );
        let miss = Template::compile(&json!({"a.$": "$.nope"}), Lang::JsonPath, "", &mut problems);
        assert_eq!(miss.eval(&s).unwrap_err().error, "States.Runtime");
    }

    #[test]
    fn reports_bad_fields() {
        let mut problems = Vec::new();
        Template::compile(
            &json!({"a.$": "nope", "b": {"c.$": 3}}),
            Lang::JsonPath,
            "/P",
            &mut problems,
        );
        assert_eq!(
            problems.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            ["/P/a.$", "/P/b/c.$"]
        );
    }

    #[test]
    fn a_field_and_its_path_form_are_one_field_too_many() {
        let mut problems = Vec::new();
        Template::compile(
            &json!({"a": {"c": 1, "c.$": "$.x"}, "b": [{"t.$": "$", "t": 2}], "u.$": "$"}),
            Lang::JsonPath,
            "/P",
            &mut problems,
        );
        assert_eq!(
            problems.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            ["/P/a/c.$", "/P/b/0/t.$"]
        );
        // In JSONata, `.$` means nothing.
        problems.clear();
        Template::compile(
            &json!({"c": 1, "c.$": 2}),
            Lang::Jsonata,
            "/A",
            &mut problems,
        );
        assert!(problems.is_empty());
    }
}
