//! JSONPath as Step Functions uses it (Jayway flavour): compiled once, applied many times.

use serde_json::{Map, Value};
use std::fmt;

/// Where a path starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Root {
    /// `$`: the state's input (or effective input).
    Input,
    /// `$$`: the context object.
    Context,
    /// `$name`: a workflow variable.
    Var(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(i64),
    Wildcard,
    Slice(Option<i64>, Option<i64>, Option<i64>),
    /// `[0,2]`: several indices.
    Indices(Vec<i64>),
    /// `['a','b']`: several keys. As the last segment it gives one object per node
    /// holding those of the keys that are present (Jayway's multi-property merge).
    Keys(Vec<String>),
    Descend(Box<Seg>),
    Filter(Filter),
    Length,
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    /// `@.x` or `$.x` alone: the path matches something.
    Exists(Operand),
    Cmp(Operand, CmpOp, Operand),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// `@...`: from the item being filtered.
    Current(Vec<Seg>),
    /// `$...`: from the root of the document being queried, as in Jayway.
    Root(Vec<Seg>),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A compiled JSONPath.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    text: String,
    root: Root,
    segs: Vec<Seg>,
    /// Why this path, which a definition may hold, cannot be evaluated (see
    /// [`Path::unevaluable`]).
    unevaluable: Option<String>,
}

/// Why a path did not compile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid JSONPath {path:?}: {msg} at offset {offset}")]
pub struct PathError {
    pub path: String,
    pub msg: String,
    pub offset: usize,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, PathError> {
        // Jayway trims the path before compiling it: `"$$.Execution.Name "` is a path.
        let body = text.trim_end();
        let mut p = Parser {
            s: body.as_bytes(),
            i: 0,
            text: body,
            unevaluable: None,
        };
        let root = p.root()?;
        let segs = p.segments(false)?;
        if p.i != p.s.len() {
            return Err(p.err("unexpected character"));
        }
        let mut unevaluable = p.unevaluable;
        if let Some(n) = segs[..segs.len().saturating_sub(1)]
            .iter()
            .position(|s| matches!(s, Seg::Keys(_)))
        {
            // Jayway merges several properties only as the last token.
            unevaluable.get_or_insert_with(|| {
                format!("Multi properties can only be used as path leafs (segment {n})")
            });
        }
        Ok(Path {
            text: text.to_string(),
            root,
            segs,
            unevaluable,
        })
    }

    /// Why evaluating this path always fails, when it does. AWS accepts such a path
    /// when a definition is created, and the state that evaluates it fails with
    /// `States.Runtime`, because Jayway JsonPath cannot compile it: a filter that
    /// compares with an unquoted word (`[?(@.code == es)]`), or several quoted keys
    /// before the last segment (`$['a','b'].c`). See corpus/validator-cases/EVIDENCE.md.
    pub fn unevaluable(&self) -> Option<&str> {
        self.unevaluable.as_deref()
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// A definite path selects at most one node; others select a list.
    pub fn is_definite(&self) -> bool {
        self.segs
            .iter()
            .all(|s| matches!(s, Seg::Key(_) | Seg::Index(_) | Seg::Keys(_) | Seg::Length))
    }

    /// A reference path (for ResultPath) names only keys and indices from `$`.
    pub fn is_reference(&self) -> bool {
        self.root == Root::Input
            && self
                .segs
                .iter()
                .all(|s| matches!(s, Seg::Key(_) | Seg::Index(_)))
    }

    /// Applies the path to `doc`. A definite path gives `None` when nothing matches;
    /// an indefinite one always gives an array.
    pub fn select(&self, doc: &Value) -> Option<Value> {
        if self.unevaluable.is_some() {
            return None;
        }
        let nodes = apply(&self.segs, doc, doc);
        if self.is_definite() {
            nodes.into_iter().next()
        } else {
            Some(Value::Array(nodes))
        }
    }

    /// Writes `value` at this reference path inside `target`, creating objects on the way.
    /// Returns false when the path runs through a non-object.
    pub fn set(&self, target: &mut Value, value: Value) -> bool {
        fn go(node: &mut Value, segs: &[Seg], value: Value) -> bool {
            let Some((first, rest)) = segs.split_first() else {
                *node = value;
                return true;
            };
            match first {
                Seg::Key(k) => {
                    let Value::Object(m) = node else { return false };
                    let child = m.entry(k.clone()).or_insert(Value::Null);
                    if !rest.is_empty() && child.is_null() {
                        *child = Value::Object(Map::new());
                    }
                    go(child, rest, value)
                }
                Seg::Index(i) => {
                    let Value::Array(a) = node else { return false };
                    let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                    match usize::try_from(idx).ok().and_then(|i| a.get_mut(i)) {
                        Some(child) => go(child, rest, value),
                        None => false,
                    }
                }
                _ => false,
            }
        }
        go(target, &self.segs, value)
    }
}

/// Applies `segs` to `doc`; `root` is what `$` means inside a filter.
fn apply(segs: &[Seg], doc: &Value, root: &Value) -> Vec<Value> {
    let mut cur: Vec<&Value> = vec![doc];
    let owned: Vec<Value>;
    for (n, seg) in segs.iter().enumerate() {
        let made = match seg {
            Seg::Length => cur
                .iter()
                .filter_map(|v| match v {
                    Value::Array(a) => Some(Value::from(a.len())),
                    Value::Object(o) => Some(Value::from(o.len())),
                    Value::String(s) => Some(Value::from(s.chars().count())),
                    _ => None,
                })
                .collect(),
            Seg::Keys(keys) => cur
                .iter()
                .filter_map(|v| v.as_object())
                .map(|o| {
                    let merged: Map<String, Value> = keys
                        .iter()
                        .filter_map(|k| Some((k.clone(), o.get(k)?.clone())))
                        .collect();
                    Value::Object(merged)
                })
                .collect(),
            _ => {
                let mut next = Vec::new();
                for v in cur {
                    step(seg, v, root, &mut next);
                }
                cur = next;
                continue;
            }
        };
        // A segment that makes new values: the rest applies to each of them.
        owned = made;
        let rest = &segs[n + 1..];
        return owned.iter().flat_map(|v| apply(rest, v, root)).collect();
    }
    cur.into_iter().cloned().collect()
}

fn norm_index(i: i64, len: usize) -> Option<usize> {
    let idx = if i < 0 { len as i64 + i } else { i };
    usize::try_from(idx).ok().filter(|&x| x < len)
}

fn step<'a>(seg: &Seg, v: &'a Value, root: &Value, out: &mut Vec<&'a Value>) {
    match seg {
        Seg::Key(k) => {
            if let Some(c) = v.as_object().and_then(|o| o.get(k)) {
                out.push(c)
            }
        }
        Seg::Index(i) => {
            if let Some(a) = v.as_array() {
                if let Some(c) = norm_index(*i, a.len()).and_then(|i| a.get(i)) {
                    out.push(c)
                }
            }
        }
        Seg::Wildcard => match v {
            Value::Array(a) => out.extend(a.iter()),
            Value::Object(o) => out.extend(o.values()),
            _ => {}
        },
        Seg::Slice(start, end, stepv) => {
            if let Some(a) = v.as_array() {
                let len = a.len() as i64;
                let st = stepv.unwrap_or(1).max(1);
                let clamp = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                let s = start.map(clamp).unwrap_or(0);
                let e = end.map(clamp).unwrap_or(len);
                let mut i = s;
                while i < e {
                    out.push(&a[i as usize]);
                    i += st;
                }
            }
        }
        Seg::Indices(idx) => {
            if let Some(a) = v.as_array() {
                out.extend(idx.iter().filter_map(|&i| a.get(norm_index(i, a.len())?)));
            }
        }
        Seg::Keys(keys) => {
            // Only reached under `..`: each key's value, as Jayway's scan gives them.
            if let Some(o) = v.as_object() {
                out.extend(keys.iter().filter_map(|k| o.get(k)));
            }
        }
        Seg::Descend(inner) => {
            fn walk<'a>(inner: &Seg, v: &'a Value, root: &Value, out: &mut Vec<&'a Value>) {
                step(inner, v, root, out);
                match v {
                    Value::Array(a) => a.iter().for_each(|c| walk(inner, c, root, out)),
                    Value::Object(o) => o.values().for_each(|c| walk(inner, c, root, out)),
                    _ => {}
                }
            }
            walk(inner, v, root, out)
        }
        Seg::Filter(f) => {
            let items: Box<dyn Iterator<Item = &'a Value>> = match v {
                Value::Array(a) => Box::new(a.iter()),
                Value::Object(o) => Box::new(o.values()),
                _ => Box::new(std::iter::empty()),
            };
            for item in items {
                if filter_matches(f, item, root) {
                    out.push(item)
                }
            }
        }
        Seg::Length => {}
    }
}

fn operand_nodes(o: &Operand, item: &Value, root: &Value) -> Vec<Value> {
    match o {
        Operand::Literal(v) => vec![v.clone()],
        Operand::Current(segs) => apply(segs, item, root),
        Operand::Root(segs) => apply(segs, root, root),
    }
}

fn operand_value(o: &Operand, item: &Value, root: &Value) -> Option<Value> {
    operand_nodes(o, item, root).into_iter().next()
}

fn filter_matches(f: &Filter, item: &Value, root: &Value) -> bool {
    match f {
        Filter::Exists(o) => !operand_nodes(o, item, root).is_empty(),
        Filter::And(a, b) => filter_matches(a, item, root) && filter_matches(b, item, root),
        Filter::Or(a, b) => filter_matches(a, item, root) || filter_matches(b, item, root),
        Filter::Not(a) => !filter_matches(a, item, root),
        Filter::Cmp(l, op, r) => {
            let (Some(l), Some(r)) = (operand_value(l, item, root), operand_value(r, item, root))
            else {
                return false;
            };
            let ord = match (&l, &r) {
                (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                _ => {
                    return match op {
                        CmpOp::Eq => l == r,
                        CmpOp::Ne => l != r,
                        _ => false,
                    }
                }
            };
            let Some(ord) = ord else { return false };
            use std::cmp::Ordering::*;
            match op {
                CmpOp::Eq => ord == Equal,
                CmpOp::Ne => ord != Equal,
                CmpOp::Lt => ord == Less,
                CmpOp::Le => ord != Greater,
                CmpOp::Gt => ord == Greater,
                CmpOp::Ge => ord != Less,
            }
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    text: &'a str,
    /// Set when the path parses but Jayway could not compile it.
    unevaluable: Option<String>,
}

fn is_name_byte(b: u8) -> bool {
    !matches!(
        b,
        b'.' | b'['
            | b']'
            | b'('
            | b')'
            | b' '
            | b'='
            | b'!'
            | b'<'
            | b'>'
            | b'&'
            | b'|'
            | b','
            | b'\''
            | b'"'
            | b'@'
            | b'?'
    )
}

impl<'a> Parser<'a> {
    fn err(&self, msg: &str) -> PathError {
        PathError {
            path: self.text.to_string(),
            msg: msg.to_string(),
            offset: self.i,
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn ws(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1
        }
    }
    fn expect(&mut self, b: u8) -> Result<(), PathError> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", b as char)))
        }
    }

    fn root(&mut self) -> Result<Root, PathError> {
        if !self.eat(b'$') {
            return Err(self.err("a path must start with '$'"));
        }
        if self.eat(b'$') {
            return Ok(Root::Context);
        }
        let start = self.i;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80 {
                self.i += 1
            } else {
                break;
            }
        }
        if self.i > start {
            Ok(Root::Var(self.text[start..self.i].to_string()))
        } else {
            Ok(Root::Input)
        }
    }

    fn name(&mut self) -> Result<String, PathError> {
        let start = self.i;
        while let Some(b) = self.peek() {
            if is_name_byte(b) {
                self.i += 1
            } else {
                break;
            }
        }
        if self.i == start {
            return Err(self.err("expected a field name"));
        }
        Ok(self.text[start..self.i].to_string())
    }

    /// Segments until the end (or, inside a filter, until a non-segment character).
    fn segments(&mut self, in_filter: bool) -> Result<Vec<Seg>, PathError> {
        let mut segs = Vec::new();
        loop {
            match self.peek() {
                None => break,
                Some(b'.') => {
                    self.i += 1;
                    if self.peek() == Some(b'[') {
                        // Jayway reads `$.[0]` as `$[0]`: a dot may precede a bracket.
                        segs.push(self.bracket()?);
                    } else if self.eat(b'.') {
                        let inner = if self.eat(b'*') {
                            Seg::Wildcard
                        } else if self.peek() == Some(b'[') {
                            self.bracket()?
                        } else {
                            Seg::Key(self.name()?)
                        };
                        segs.push(Seg::Descend(Box::new(inner)));
                    } else if self.eat(b'*') {
                        segs.push(Seg::Wildcard)
                    } else {
                        let n = self.name()?;
                        if n == "length" && self.s[self.i..].starts_with(b"()") {
                            self.i += 2;
                            segs.push(Seg::Length)
                        } else {
                            segs.push(Seg::Key(n))
                        }
                    }
                }
                Some(b'[') => segs.push(self.bracket()?),
                Some(_) if in_filter => break,
                Some(_) => return Err(self.err("unexpected character")),
            }
        }
        Ok(segs)
    }

    fn int(&mut self) -> Result<Option<i64>, PathError> {
        self.ws();
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1
        }
        if self.i == start {
            return Ok(None);
        }
        let n = self.text[start..self.i]
            .parse::<i64>()
            .map_err(|_| self.err("invalid integer"))?;
        self.ws();
        Ok(Some(n))
    }

    fn quoted(&mut self) -> Result<String, PathError> {
        // A union's later names come here unchecked: a byte that is no quote may be the
        // middle of a character.
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(self.err("expected a quoted name")),
        };
        self.i += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.text[self.i..].chars().next() else {
                return Err(self.err("unterminated string"));
            };
            self.i += c.len_utf8();
            if c as u32 == q as u32 {
                return Ok(out);
            }
            // Only an escaped quote is an escape; other backslashes are literal, as in Jayway.
            if c == '\\' && self.s.get(self.i) == Some(&q) {
                self.i += 1;
                out.push(q as char);
            } else {
                out.push(c)
            }
        }
    }

    fn bracket(&mut self) -> Result<Seg, PathError> {
        self.expect(b'[')?;
        self.ws();
        let seg = match self.peek() {
            Some(b'*') => {
                self.i += 1;
                Seg::Wildcard
            }
            Some(b'?') => {
                self.i += 1;
                self.ws();
                self.expect(b'(')?;
                let f = self.filter_or()?;
                self.ws();
                self.expect(b')')?;
                Seg::Filter(f)
            }
            Some(b'\'') | Some(b'"') => {
                let mut keys = vec![self.quoted()?];
                self.ws();
                while self.eat(b',') {
                    self.ws();
                    keys.push(self.quoted()?);
                    self.ws();
                }
                if keys.len() == 1 {
                    Seg::Key(keys.swap_remove(0))
                } else {
                    Seg::Keys(keys)
                }
            }
            _ => {
                let a = self.int()?;
                if self.eat(b':') {
                    let b = self.int()?;
                    let c = if self.eat(b':') { self.int()? } else { None };
                    Seg::Slice(a, b, c)
                } else if let Some(a) = a {
                    let mut idx = vec![a];
                    while self.eat(b',') {
                        idx.push(self.int()?.ok_or_else(|| self.err("expected an index"))?);
                    }
                    if idx.len() == 1 {
                        Seg::Index(a)
                    } else {
                        Seg::Indices(idx)
                    }
                } else {
                    return Err(
                        self.err("expected an index, slice, '*', a quoted name or a filter")
                    );
                }
            }
        };
        self.ws();
        self.expect(b']')?;
        Ok(seg)
    }

    fn filter_or(&mut self) -> Result<Filter, PathError> {
        let mut l = self.filter_and()?;
        loop {
            self.ws();
            if self.s[self.i..].starts_with(b"||") {
                self.i += 2;
                let r = self.filter_and()?;
                l = Filter::Or(Box::new(l), Box::new(r));
            } else {
                return Ok(l);
            }
        }
    }

    fn filter_and(&mut self) -> Result<Filter, PathError> {
        let mut l = self.filter_atom()?;
        loop {
            self.ws();
            if self.s[self.i..].starts_with(b"&&") {
                self.i += 2;
                let r = self.filter_atom()?;
                l = Filter::And(Box::new(l), Box::new(r));
            } else {
                return Ok(l);
            }
        }
    }

    fn filter_atom(&mut self) -> Result<Filter, PathError> {
        self.ws();
        if self.eat(b'!') {
            return Ok(Filter::Not(Box::new(self.filter_atom()?)));
        }
        if self.eat(b'(') {
            let f = self.filter_or()?;
            self.ws();
            self.expect(b')')?;
            return Ok(f);
        }
        let left = self.operand()?;
        self.ws();
        let rest = &self.s[self.i..];
        let op = [
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ]
        .into_iter()
        .find(|(t, _)| rest.starts_with(t.as_bytes()));
        match op {
            Some((t, op)) => {
                self.i += t.len();
                let right = self.operand()?;
                Ok(Filter::Cmp(left, op, right))
            }
            None => match left {
                Operand::Literal(_) => Err(self.err("expected a comparison")),
                path => Ok(Filter::Exists(path)),
            },
        }
    }

    /// The bare word at the cursor: up to a space, `)`, or an operator character.
    fn word(&self) -> &'a [u8] {
        let rest = &self.s[self.i..];
        let end = rest
            .iter()
            .position(|b| b" )&|=!<>".contains(b))
            .unwrap_or(rest.len());
        &rest[..end]
    }

    fn operand(&mut self) -> Result<Operand, PathError> {
        self.ws();
        let word = self.word();
        let keyword = match word {
            b"true" => Some(Value::Bool(true)),
            b"false" => Some(Value::Bool(false)),
            b"null" => Some(Value::Null),
            _ => None,
        };
        if let Some(v) = keyword {
            self.i += word.len();
            return Ok(Operand::Literal(v));
        }
        match self.peek() {
            Some(b'@') => {
                self.i += 1;
                Ok(Operand::Current(self.segments(true)?))
            }
            Some(b'$') => {
                self.i += 1;
                Ok(Operand::Root(self.segments(true)?))
            }
            Some(b'\'') | Some(b'"') => Ok(Operand::Literal(Value::String(self.quoted()?))),
            Some(b) if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => {
                // `[?(@.code == es)]`: Jayway reads `es` as a number and cannot compile
                // the filter, so the path fails wherever it is evaluated. AWS accepts
                // the definition (corpus/validator-cases/EVIDENCE.md).
                let w = String::from_utf8_lossy(word).into_owned();
                self.i += word.len();
                self.unevaluable.get_or_insert_with(|| {
                    format!("the filter compares with {w:?}, which is neither a path nor a quoted string, a number, true, false or null")
                });
                Ok(Operand::Literal(Value::String(w)))
            }
            _ => {
                let start = self.i;
                while self.peek().is_some_and(|b| {
                    b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')
                }) {
                    self.i += 1
                }
                let n: Value = serde_json::from_str(&self.text[start..self.i])
                    .map_err(|_| self.err("expected a value"))?;
                if !n.is_number() {
                    return Err(self.err("expected a value"));
                }
                Ok(Operand::Literal(n))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(p: &str, v: Value) -> Option<Value> {
        Path::parse(p).unwrap().select(&v)
    }

    /// Found by the `jsonpath` and `asl_parse` fuzz targets: a union's later name was
    /// read as quoted whatever came, and a multibyte character there panicked.
    #[test]
    fn a_union_name_without_quotes_is_an_error() {
        for p in [
            "$['a',\u{e9}]",
            "$..[\"a\",\u{fffd}1]",
            "$['a',b]",
            "$['a',",
        ] {
            assert!(Path::parse(p).is_err(), "{p}");
        }
        assert!(Path::parse("$['a', \"b\"]").is_ok());
    }

    #[test]
    fn selects() {
        let doc = json!({"a": {"b": [1, 2, 3]}, "users": [{"s": 0, "n": "x"}, {"s": 1, "n": "y"}]});
        assert_eq!(sel("$", doc.clone()), Some(doc.clone()));
        assert_eq!(sel("$.a.b[1]", doc.clone()), Some(json!(2)));
        assert_eq!(sel("$.a.b[-1]", doc.clone()), Some(json!(3)));
        assert_eq!(sel("$['a']['b'][0]", doc.clone()), Some(json!(1)));
        assert_eq!(sel("$.a.b[1:]", doc.clone()), Some(json!([2, 3])));
        assert_eq!(sel("$.a.b[:1]", doc.clone()), Some(json!([1])));
        assert_eq!(sel("$.a.b[*]", doc.clone()), Some(json!([1, 2, 3])));
        assert_eq!(
            sel("$.users[?(@.s == 0)].n", doc.clone()),
            Some(json!(["x"]))
        );
        assert_eq!(sel("$..n", doc.clone()), Some(json!(["x", "y"])));
        assert_eq!(sel("$.missing", doc.clone()), None);
        assert_eq!(sel("$.missing[*].x", doc.clone()), Some(json!([])));
        assert_eq!(sel("$.a.b.length()", doc), Some(json!(3)));
    }

    /// Forms Jayway JsonPath (and so AWS) accepts, with Jayway's results.
    #[test]
    fn jayway_forms() {
        let doc = json!({
            "Snapshots": [{"State": "ok"}, {"State": "gone"}],
            "agent_id": "w2",
            "workers": [{"workerId": "w1", "n": 1}, {"workerId": "w2", "n": 2}],
            "objs": [{"bucket": "b", "key": "k", "size": 1}, {"bucket": "c"}, 7],
        });
        assert_eq!(sel("$.[0]", json!([1, 2])), Some(json!(1)));
        assert_eq!(sel("$.Snapshots.[0].State", doc.clone()), Some(json!("ok")));
        assert_eq!(
            sel("$.[?(@.x > 0)]", json!([{"x": 1}, {"x": 0}])),
            Some(json!([{"x": 1}]))
        );
        // Several keys as the last segment: one object per node, with the keys it has.
        assert_eq!(
            sel("$.objs.[*].['bucket','key']", doc.clone()),
            Some(json!([{"bucket": "b", "key": "k"}, {"bucket": "c"}]))
        );
        assert_eq!(
            sel("$['agent_id','nope']", doc.clone()),
            Some(json!({"agent_id": "w2"}))
        );
        assert_eq!(
            sel("$.objs[0,2]", doc.clone()),
            Some(json!([doc["objs"][0], 7]))
        );
        // `$` inside a filter is the root of the document being queried.
        assert_eq!(
            sel("$.workers[?(@.workerId == $.agent_id)].n", doc.clone()),
            Some(json!([2]))
        );
        assert_eq!(
            sel("$.workers[?($.agent_id)].n", doc.clone()),
            Some(json!([1, 2]))
        );
        assert_eq!(sel("$.workers[?($.nope)].n", doc.clone()), Some(json!([])));
        // Trailing spaces are trimmed; the text stays as written.
        let p = Path::parse("$$.Execution.Name ").unwrap();
        assert_eq!(p.root(), &Root::Context);
        assert_eq!(p.text(), "$$.Execution.Name ");
        assert_eq!(
            p.select(&json!({"Execution": {"Name": "x"}})),
            Some(json!("x"))
        );
    }

    /// Paths AWS accepts in a definition that Jayway cannot compile: they parse, and
    /// never evaluate.
    #[test]
    fn unevaluable_paths() {
        for text in [
            "$.langs[?(@.TargetLanguageCode==es)]",
            "$.a[?(@.OutputKey == FooBar)].OutputValue",
            "$.a[?(@.name==ecs.availability-zone)].value",
            "$.a[?(FooBar == @.x)]",
            "$['a','b'].c",
        ] {
            let p = Path::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(p.unevaluable().is_some(), "{text}");
            assert_eq!(p.select(&json!({"a": [{"x": 1}]})), None, "{text}");
        }
        for text in [
            "$.a[?(@.x == true)]",
            "$.a[?(@.x == null)]",
            "$.a[?(@.x == 'es')]",
        ] {
            assert_eq!(Path::parse(text).unwrap().unevaluable(), None, "{text}");
        }
    }

    #[test]
    fn roots_and_errors() {
        assert_eq!(
            Path::parse("$$.Execution.Id").unwrap().root(),
            &Root::Context
        );
        assert_eq!(
            Path::parse("$var.x").unwrap().root(),
            &Root::Var("var".into())
        );
        for bad in ["", "a.b", "$.", "$[", "$.a[?(@.x ==)]", "$.a]", "$['x"] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sets_reference_paths() {
        let mut v = json!({"a": 1});
        assert!(Path::parse("$.b.c").unwrap().set(&mut v, json!(2)));
        assert_eq!(v, json!({"a": 1, "b": {"c": 2}}));
        assert!(!Path::parse("$.a.c").unwrap().set(&mut v, json!(2)));
    }
}
