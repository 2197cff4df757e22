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
    Union(Vec<Seg>),
    Descend(Box<Seg>),
    Filter(Filter),
    Length,
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Exists(Vec<Seg>),
    Cmp(Operand, CmpOp, Operand),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Current(Vec<Seg>),
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
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
            text,
        };
        let root = p.root()?;
        let segs = p.segments(false)?;
        if p.i != p.s.len() {
            return Err(p.err("unexpected character"));
        }
        Ok(Path {
            text: text.to_string(),
            root,
            segs,
        })
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
            .all(|s| matches!(s, Seg::Key(_) | Seg::Index(_) | Seg::Length))
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
        let nodes = apply(&self.segs, doc);
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

fn apply(segs: &[Seg], doc: &Value) -> Vec<Value> {
    let mut cur: Vec<&Value> = vec![doc];
    let owned: Vec<Value>;
    for (n, seg) in segs.iter().enumerate() {
        if let Seg::Length = seg {
            owned = cur
                .iter()
                .filter_map(|v| match v {
                    Value::Array(a) => Some(Value::from(a.len())),
                    Value::Object(o) => Some(Value::from(o.len())),
                    Value::String(s) => Some(Value::from(s.chars().count())),
                    _ => None,
                })
                .collect();
            let rest = &segs[n + 1..];
            return owned.iter().flat_map(|v| apply(rest, v)).collect();
        }
        let mut next = Vec::new();
        for v in cur {
            step(seg, v, &mut next);
        }
        cur = next;
    }
    cur.into_iter().cloned().collect()
}

fn norm_index(i: i64, len: usize) -> Option<usize> {
    let idx = if i < 0 { len as i64 + i } else { i };
    usize::try_from(idx).ok().filter(|&x| x < len)
}

fn step<'a>(seg: &Seg, v: &'a Value, out: &mut Vec<&'a Value>) {
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
        Seg::Union(parts) => {
            for p in parts {
                step(p, v, out)
            }
        }
        Seg::Descend(inner) => {
            fn walk<'a>(inner: &Seg, v: &'a Value, out: &mut Vec<&'a Value>) {
                step(inner, v, out);
                match v {
                    Value::Array(a) => a.iter().for_each(|c| walk(inner, c, out)),
                    Value::Object(o) => o.values().for_each(|c| walk(inner, c, out)),
                    _ => {}
                }
            }
            walk(inner, v, out)
        }
        Seg::Filter(f) => {
            let items: Box<dyn Iterator<Item = &'a Value>> = match v {
                Value::Array(a) => Box::new(a.iter()),
                Value::Object(o) => Box::new(o.values()),
                _ => Box::new(std::iter::empty()),
            };
            for item in items {
                if filter_matches(f, item) {
                    out.push(item)
                }
            }
        }
        Seg::Length => {}
    }
}

fn operand_value(o: &Operand, item: &Value) -> Option<Value> {
    match o {
        Operand::Literal(v) => Some(v.clone()),
        Operand::Current(segs) => apply(segs, item).into_iter().next(),
    }
}

fn filter_matches(f: &Filter, item: &Value) -> bool {
    match f {
        Filter::Exists(segs) => !apply(segs, item).is_empty(),
        Filter::And(a, b) => filter_matches(a, item) && filter_matches(b, item),
        Filter::Or(a, b) => filter_matches(a, item) || filter_matches(b, item),
        Filter::Not(a) => !filter_matches(a, item),
        Filter::Cmp(l, op, r) => {
            let (Some(l), Some(r)) = (operand_value(l, item), operand_value(r, item)) else {
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
                    if self.eat(b'.') {
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
        let q = self.peek().ok_or_else(|| self.err("expected a quote"))?;
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
                let mut keys = vec![Seg::Key(self.quoted()?)];
                self.ws();
                while self.eat(b',') {
                    self.ws();
                    keys.push(Seg::Key(self.quoted()?));
                    self.ws();
                }
                if keys.len() == 1 {
                    keys.pop().unwrap_or(Seg::Wildcard)
                } else {
                    Seg::Union(keys)
                }
            }
            _ => {
                let a = self.int()?;
                if self.eat(b':') {
                    let b = self.int()?;
                    let c = if self.eat(b':') { self.int()? } else { None };
                    Seg::Slice(a, b, c)
                } else if let Some(a) = a {
                    let mut idx = vec![Seg::Index(a)];
                    while self.eat(b',') {
                        idx.push(Seg::Index(
                            self.int()?.ok_or_else(|| self.err("expected an index"))?,
                        ));
                    }
                    if idx.len() == 1 {
                        idx.pop().unwrap_or(Seg::Wildcard)
                    } else {
                        Seg::Union(idx)
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
                Operand::Current(segs) => Ok(Filter::Exists(segs)),
                Operand::Literal(_) => Err(self.err("expected a comparison")),
            },
        }
    }

    fn operand(&mut self) -> Result<Operand, PathError> {
        self.ws();
        match self.peek() {
            Some(b'@') => {
                self.i += 1;
                Ok(Operand::Current(self.segments(true)?))
            }
            Some(b'\'') | Some(b'"') => Ok(Operand::Literal(Value::String(self.quoted()?))),
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Operand::Literal(Value::Bool(true)))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Operand::Literal(Value::Bool(false)))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Operand::Literal(Value::Null))
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
