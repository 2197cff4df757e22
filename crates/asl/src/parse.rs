//! Parsing and validation in one walk: every field is checked where it is read,
//! and every problem is recorded with its JSON pointer.

use crate::*;
use serde_json::Map;
use shoal_expr::choice::{self, Operand, Test};
use shoal_expr::intrinsic::Func;
use shoal_expr::template::compile_dollar;
use std::collections::{HashMap, HashSet, VecDeque};

/// The outcome of parsing: the model (when the document had the right overall shape)
/// and every diagnostic. The definition is valid when `diagnostics` is empty.
#[derive(Debug)]
pub struct Parsed {
    pub machine: Option<StateMachine>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    pub fn is_valid(&self) -> bool {
        self.diagnostics.is_empty() && self.machine.is_some()
    }

    /// AWS's ValidateStateMachineDefinition result.
    pub fn validation_report(&self) -> Value {
        let diags: Vec<Value> = self
            .diagnostics
            .iter()
            .map(|d| {
                let mut j =
                    serde_json::json!({"severity": "ERROR", "code": d.code, "message": d.message});
                // AWS writes the document's own location as "/", and gives none when
                // the definition is not a JSON object at all.
                if !(self.machine.is_none() && d.code == SCHEMA) {
                    let location = if d.pointer.is_empty() {
                        "/"
                    } else {
                        &d.pointer
                    };
                    j["location"] = location.into();
                }
                j
            })
            .collect();
        let result = if self.is_valid() { "OK" } else { "FAIL" };
        serde_json::json!({"result": result, "diagnostics": diags, "truncated": false})
    }
}

/// CloudFormation-style DefinitionSubstitutions: every `${K}` becomes V.
pub fn substitute<'a>(text: &str, subs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut text = text.to_string();
    for (k, v) in subs {
        text = text.replace(&format!("${{{k}}}"), v);
    }
    text
}

const SCHEMA: &str = "SCHEMA_VALIDATION_FAILED";
const JSON_PATH: &str = "INVALID_JSON_PATH";
const MISSING_TARGET: &str = "MISSING_TRANSITION_TARGET";
const UNREACHABLE: &str = "UNREACHABLE_STATE";
const NO_TERMINAL: &str = "NO_TERMINAL_STATE";
const INVALID_JSON: &str = "INVALID_JSON_DESCRIPTION";
const DUPLICATE_STATE: &str = "DUPLICATE_STATE_NAME";

/// Parses definition text: JSON, or YAML as SAM allows.
pub fn parse(text: &str) -> Parsed {
    if text.trim().is_empty() {
        return parse_value(&Value::Null);
    }
    let value = match serde_json::from_str::<Value>(text) {
        Ok(v) => v,
        Err(json_err) => {
            let looks_json =
                text.trim_start().starts_with('{') || text.trim_start().starts_with('[');
            match (looks_json, serde_yaml::from_str::<Value>(text)) {
                (false, Ok(v)) if v.is_object() => v,
                (false, Err(e)) => {
                    let at = e
                        .location()
                        .map(|l| format!("line {} column {}", l.line(), l.column()))
                        .unwrap_or_default();
                    return invalid_doc(format!("not valid JSON or YAML at {at}: {e}"));
                }
                _ => {
                    return invalid_doc(format!(
                        "not valid JSON at line {} column {}: {}",
                        json_err.line(),
                        json_err.column(),
                        json_err
                    ))
                }
            }
        }
    };
    parse_value(&value)
}

fn invalid_doc(message: String) -> Parsed {
    Parsed {
        machine: None,
        diagnostics: vec![Diagnostic {
            pointer: String::new(),
            code: INVALID_JSON,
            message,
        }],
    }
}

/// Parses an already-decoded definition.
pub fn parse_value(v: &Value) -> Parsed {
    let mut cx = Cx::default();
    let machine = cx.machine(v, "", Lang::JsonPath, true);
    Parsed {
        machine,
        diagnostics: cx.diags,
    }
}

#[derive(Default)]
struct Cx {
    diags: Vec<Diagnostic>,
    /// Every state name met so far, in branches and item processors too, with the
    /// pointer of its first state: names are unique across the whole machine.
    state_names: HashMap<String, String>,
    /// The top level's QueryLanguage: under JSONata no state may be JSONPath.
    top_lang: Lang,
}

fn esc(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

fn at(ptr: &str, k: &str) -> String {
    format!("{ptr}/{}", esc(k))
}

const COMMON: &[&str] = &["Type", "Comment", "QueryLanguage"];

fn allowed(ty: &str, lang: Lang) -> Option<Vec<&'static str>> {
    let jp = lang == Lang::JsonPath;
    let mut f: Vec<&'static str> = COMMON.to_vec();
    let io: &[&str] = if jp {
        &["InputPath", "OutputPath"]
    } else {
        &["Output"]
    };
    let flow: &[&str] = &["Next", "End"];
    let result: &[&str] = if jp {
        &["ResultSelector", "ResultPath"]
    } else {
        &[]
    };
    let params: &[&str] = if jp { &["Parameters"] } else { &["Arguments"] };
    let recover: &[&str] = &["Retry", "Catch"];
    match ty {
        "Pass" => {
            f.extend(io);
            f.extend(flow);
            f.extend(["Assign", "Result"]);
            if jp {
                f.extend(["Parameters", "ResultPath"]);
            }
        }
        "Task" => {
            f.extend(io);
            f.extend(flow);
            f.extend(result);
            f.extend(params);
            f.extend(recover);
            f.extend([
                "Assign",
                "Resource",
                "TimeoutSeconds",
                "HeartbeatSeconds",
                "Credentials",
            ]);
            if jp {
                f.extend(["TimeoutSecondsPath", "HeartbeatSecondsPath"]);
            }
        }
        "Choice" => {
            f.extend(io);
            f.extend(["Choices", "Default", "Assign"]);
        }
        "Wait" => {
            f.extend(io);
            f.extend(flow);
            f.extend(["Assign", "Seconds", "Timestamp"]);
            if jp {
                f.extend(["SecondsPath", "TimestampPath"]);
            }
        }
        "Succeed" => f.extend(io),
        "Fail" => {
            f.extend(["Error", "Cause"]);
            if jp {
                f.extend(["ErrorPath", "CausePath"]);
            }
        }
        "Parallel" => {
            f.extend(io);
            f.extend(flow);
            f.extend(result);
            f.extend(params);
            f.extend(recover);
            f.extend(["Assign", "Branches"]);
        }
        "Map" => {
            f.extend(io);
            f.extend(flow);
            f.extend(result);
            f.extend(recover);
            f.extend([
                "Assign",
                "ItemProcessor",
                "Iterator",
                "ItemSelector",
                "MaxConcurrency",
                "ToleratedFailureCount",
                "ToleratedFailurePercentage",
                "ItemReader",
                "ItemBatcher",
                "ResultWriter",
                "Label",
            ]);
            if jp {
                f.extend([
                    "ItemsPath",
                    "Parameters",
                    "MaxConcurrencyPath",
                    "ToleratedFailureCountPath",
                    "ToleratedFailurePercentagePath",
                ]);
            } else {
                f.extend(["Items"]);
            }
        }
        _ => return None,
    }
    Some(f)
}

impl Cx {
    fn err(&mut self, ptr: impl Into<String>, code: &'static str, msg: impl Into<String>) {
        self.diags.push(Diagnostic {
            pointer: ptr.into(),
            code,
            message: msg.into(),
        });
    }

    fn obj<'v>(&mut self, v: &'v Value, ptr: &str, what: &str) -> Option<&'v Map<String, Value>> {
        match v.as_object() {
            Some(m) => Some(m),
            None => {
                self.err(ptr, SCHEMA, format!("{what} must be an object"));
                None
            }
        }
    }

    fn unknown_fields(&mut self, m: &Map<String, Value>, ptr: &str, allowed: &[&str], what: &str) {
        for k in m.keys() {
            if !allowed.contains(&k.as_str()) {
                self.err(
                    at(ptr, k),
                    SCHEMA,
                    format!("field {k:?} is not supported in {what}"),
                );
            }
        }
    }

    fn string(&mut self, m: &Map<String, Value>, ptr: &str, k: &str) -> Option<String> {
        match m.get(k)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.err(at(ptr, k), SCHEMA, format!("{k} must be a string"));
                None
            }
        }
    }

    fn number(
        &mut self,
        m: &Map<String, Value>,
        ptr: &str,
        k: &str,
        min: f64,
        integer: bool,
    ) -> Option<f64> {
        let v = m.get(k)?;
        match v.as_f64() {
            Some(n) if integer && n.fract() != 0.0 => {
                self.err(at(ptr, k), SCHEMA, format!("{k} must be an integer"));
                None
            }
            Some(n) if n < min => {
                self.err(
                    at(ptr, k),
                    SCHEMA,
                    format!("{k} must be at least {min}, got {n}"),
                );
                None
            }
            Some(n) => Some(n),
            None => {
                self.err(at(ptr, k), SCHEMA, format!("{k} must be a number"));
                None
            }
        }
    }

    fn path(&mut self, m: &Map<String, Value>, ptr: &str, k: &str) -> Option<Path> {
        let s = self.string(m, ptr, k)?;
        match Path::parse(&s) {
            Ok(p) => Some(p),
            Err(e) => {
                self.err(at(ptr, k), JSON_PATH, e.to_string());
                None
            }
        }
    }

    fn data_path(&mut self, m: &Map<String, Value>, ptr: &str, k: &str) -> DataPath {
        match m.get(k) {
            None => DataPath::Whole,
            Some(Value::Null) => DataPath::Null,
            Some(_) => self.path(m, ptr, k).map(DataPath::Path).unwrap_or_default(),
        }
    }

    fn result_path(&mut self, m: &Map<String, Value>, ptr: &str) -> ResultPath {
        match m.get("ResultPath") {
            None => ResultPath::Replace,
            Some(Value::Null) => ResultPath::Discard,
            Some(_) => match self.path(m, ptr, "ResultPath") {
                Some(p) if p.is_reference() => ResultPath::Path(p),
                Some(p) => {
                    self.err(at(ptr, "ResultPath"), JSON_PATH, format!("ResultPath {:?} must be a reference path (only keys and indices from $)", p.text()));
                    ResultPath::Replace
                }
                None => ResultPath::Replace,
            },
        }
    }

    fn template(
        &mut self,
        m: &Map<String, Value>,
        ptr: &str,
        k: &str,
        lang: Lang,
    ) -> Option<Template> {
        let v = m.get(k)?;
        let mut problems = Vec::new();
        let t = Template::compile(v, lang, &at(ptr, k), &mut problems);
        for (p, msg) in problems {
            self.err(p, SCHEMA, msg);
        }
        Some(t)
    }

    /// `Assign`: an object whose keys are variable names.
    fn assign(&mut self, m: &Map<String, Value>, ptr: &str, lang: Lang) -> Option<Template> {
        if let Some(a) = m.get("Assign") {
            match a.as_object() {
                Some(vars) => {
                    for k in vars.keys() {
                        let name = k.strip_suffix(".$").unwrap_or(k);
                        let ok = !name.is_empty()
                            && name.len() <= 80
                            && name
                                .chars()
                                .next()
                                .is_some_and(|c| c.is_alphabetic() || c == '_')
                            && name.chars().all(|c| c.is_alphanumeric() || c == '_');
                        if !ok {
                            self.err(
                                at(&at(ptr, "Assign"), k),
                                SCHEMA,
                                format!("{name:?} is not a valid variable name"),
                            );
                        }
                    }
                }
                None => self.err(at(ptr, "Assign"), SCHEMA, "Assign must be an object"),
            }
        }
        self.template(m, ptr, "Assign", lang)
    }

    /// A number that may also come from `<k>Path` (JSONPath) or `{% %}` (JSONata).
    fn num(
        &mut self,
        m: &Map<String, Value>,
        ptr: &str,
        k: &str,
        lang: Lang,
        min: f64,
        max: Option<f64>,
    ) -> Option<Num> {
        let kp = format!("{k}Path");
        if m.contains_key(k) && m.contains_key(&kp) {
            self.err(ptr, SCHEMA, format!("{k} and {kp} are mutually exclusive"));
        }
        if m.contains_key(&kp) {
            return self.path(m, ptr, &kp).map(Num::Path);
        }
        match m.get(k)? {
            Value::String(s) if lang == Lang::Jsonata && shoal_expr::is_jsonata_expr(s) => {
                match shoal_expr::jsonata::compile(s) {
                    Ok(e) => Some(Num::Expr(e)),
                    Err(e) => {
                        self.err(at(ptr, k), SCHEMA, e);
                        None
                    }
                }
            }
            _ => {
                let n = self.number(m, ptr, k, min, false)?;
                if let Some(max) = max.filter(|&mx| n > mx) {
                    self.err(
                        at(ptr, k),
                        SCHEMA,
                        format!("{k} must be at most {max}, got {n}"),
                    );
                    return None;
                }
                Some(Num::Lit(n))
            }
        }
    }

    fn text(&mut self, m: &Map<String, Value>, ptr: &str, k: &str, lang: Lang) -> Option<Text> {
        let kp = format!("{k}Path");
        if m.contains_key(k) && m.contains_key(&kp) {
            self.err(ptr, SCHEMA, format!("{k} and {kp} are mutually exclusive"));
        }
        if let Some(s) = self.string(m, ptr, &kp) {
            return match compile_dollar(&s, &kp) {
                Ok(Template::Call(c)) if !returns_string(c.func) => {
                    self.err(at(ptr, &kp), JSON_PATH, format!("{kp} must be a JSONPath or an intrinsic function that returns a string (States.ArrayGetItem, Base64Encode, Base64Decode, Format, JsonToString, Hash or UUID), not {}", c.func.name()));
                    None
                }
                Ok(t) => Some(Text::Dynamic(t)),
                Err(e) => {
                    self.err(at(ptr, &kp), JSON_PATH, e);
                    None
                }
            };
        }
        let s = self.string(m, ptr, k)?;
        if lang == Lang::Jsonata && shoal_expr::is_jsonata_expr(&s) {
            return self.template(m, ptr, k, lang).map(Text::Dynamic);
        }
        Some(Text::Lit(s))
    }

    fn lang(&mut self, m: &Map<String, Value>, ptr: &str, inherited: Lang) -> Lang {
        match m.get("QueryLanguage") {
            None => inherited,
            Some(Value::String(s)) if s == "JSONPath" => {
                // Only the top level's JSONata binds: a JSONPath state inside a JSONata
                // Map of a JSONPath machine is valid (AWS's recorded
                // ValidateStateMachineDefinition, VALID_QUERY_LANGUAGE_PASS).
                if self.top_lang == Lang::Jsonata && ptr.contains("/States/") {
                    self.err(
                        ptr,
                        SCHEMA,
                        "'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine",
                    );
                }
                Lang::JsonPath
            }
            Some(Value::String(s)) if s == "JSONata" => Lang::Jsonata,
            Some(_) => {
                self.err(
                    at(ptr, "QueryLanguage"),
                    SCHEMA,
                    "QueryLanguage must be \"JSONPath\" or \"JSONata\"",
                );
                inherited
            }
        }
    }

    fn machine(
        &mut self,
        v: &Value,
        ptr: &str,
        inherited: Lang,
        top: bool,
    ) -> Option<StateMachine> {
        let m = if top {
            let Some(m) = v.as_object() else {
                // AWS's answer to `" "`, recorded (ValidateStateMachineDefinition).
                self.err(ptr, SCHEMA, "Definition must be a valid JSON object");
                return None;
            };
            m
        } else {
            self.obj(v, ptr, "a state machine")?
        };
        let mut fields = vec!["StartAt", "States", "Comment"];
        if top {
            fields.extend(["Version", "TimeoutSeconds", "QueryLanguage"]);
        } else {
            fields.push("ProcessorConfig");
        }
        self.unknown_fields(
            m,
            ptr,
            &fields,
            if top {
                "a state machine"
            } else {
                "a branch or item processor"
            },
        );
        let lang = if top {
            let lang = self.lang(m, ptr, inherited);
            self.top_lang = lang;
            lang
        } else {
            inherited
        };
        let comment = self.string(m, ptr, "Comment");
        if let Some(ver) = m.get("Version") {
            if ver != "1.0" {
                self.err(at(ptr, "Version"), SCHEMA, "Version must be \"1.0\"");
            }
        }
        let timeout_seconds = self
            .number(m, ptr, "TimeoutSeconds", 1.0, true)
            .map(|n| n as u64);
        let start_at = self.string(m, ptr, "StartAt");
        // AWS's wording and order, recorded: "These fields are required: [States, StartAt]".
        let missing: Vec<&str> = ["States", "StartAt"]
            .into_iter()
            .filter(|k| !m.contains_key(*k))
            .collect();
        if !missing.is_empty() {
            self.err(
                ptr,
                SCHEMA,
                format!("These fields are required: [{}]", missing.join(", ")),
            );
        }
        let mut states = IndexMap::new();
        match m.get("States") {
            None => {}
            Some(sv) => {
                let sptr = at(ptr, "States");
                if let Some(sm) = self.obj(sv, &sptr, "States") {
                    if sm.is_empty() {
                        self.err(&sptr, SCHEMA, "States must hold at least one state");
                    }
                    for (name, st) in sm {
                        let nptr = at(&sptr, name);
                        if name.is_empty() || name.chars().count() > 80 {
                            self.err(
                                &nptr,
                                SCHEMA,
                                "a state name must be 1 to 80 characters long",
                            );
                        }
                        match self.state_names.get(name) {
                            Some(first) => {
                                let msg = format!("Duplicate State name: {name} (first at {first}): state names are unique across the whole state machine, its branches and item processors");
                                self.err(&nptr, DUPLICATE_STATE, msg);
                            }
                            None => {
                                self.state_names.insert(name.clone(), nptr.clone());
                            }
                        }
                        if let Some(s) = self.state(name, st, &nptr, lang) {
                            states.insert(name.clone(), s);
                        }
                    }
                }
            }
        }
        let start_at = start_at.unwrap_or_default();
        let machine = StateMachine {
            comment,
            start_at,
            states,
            timeout_seconds,
            query_language: lang,
        };
        if let (Some(Value::Object(sm)), true) = (m.get("States"), m.contains_key("StartAt")) {
            self.graph(&machine, sm, ptr);
        }
        Some(machine)
    }

    /// Transition targets, reachability and termination.
    fn graph(&mut self, sm: &StateMachine, raw: &Map<String, Value>, ptr: &str) {
        let names: HashSet<&str> = raw.keys().map(String::as_str).collect();
        if !names.contains(sm.start_at.as_str()) {
            self.err(
                at(ptr, "StartAt"),
                MISSING_TARGET,
                format!("StartAt {:?} is not a state", sm.start_at),
            );
        }
        let mut terminal = false;
        for (name, st) in &sm.states {
            let sptr = at(&at(ptr, "States"), name);
            for (field_ptr, target) in targets(st, &sptr) {
                if !names.contains(target.as_str()) {
                    self.err(
                        field_ptr,
                        MISSING_TARGET,
                        format!("missing transition target {target:?}"),
                    );
                }
            }
            terminal |= matches!(st.transition, Transition::End)
                || matches!(st.kind, Kind::Succeed | Kind::Fail { .. });
        }
        if !terminal && !sm.states.is_empty() {
            self.err(
                at(ptr, "States"),
                NO_TERMINAL,
                "no state ends the execution: add End, Succeed or Fail",
            );
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut queue: VecDeque<&str> = VecDeque::from([sm.start_at.as_str()]);
        while let Some(n) = queue.pop_front() {
            if !seen.insert(n) {
                continue;
            }
            if let Some(st) = sm.states.get(n) {
                for (_, t) in targets(st, "") {
                    if let Some((k, _)) = sm.states.get_key_value(t.as_str()) {
                        queue.push_back(k.as_str());
                    }
                }
            }
        }
        for name in raw.keys() {
            if !seen.contains(name.as_str()) && sm.states.contains_key(name) {
                self.err(
                    at(&at(ptr, "States"), name),
                    UNREACHABLE,
                    format!("state {name:?} is not reachable"),
                );
            }
        }
    }

    fn state(&mut self, name: &str, v: &Value, ptr: &str, inherited: Lang) -> Option<State> {
        let m = self.obj(v, ptr, "a state")?;
        let lang = self.lang(m, ptr, inherited);
        let ty = match m.get("Type") {
            Some(Value::String(t)) => t.clone(),
            Some(_) => {
                self.err(at(ptr, "Type"), SCHEMA, "Type must be a string");
                return None;
            }
            None => {
                self.err(ptr, SCHEMA, "Type is required");
                return None;
            }
        };
        let Some(fields) = allowed(&ty, lang) else {
            self.err(
                at(ptr, "Type"),
                SCHEMA,
                format!("unknown state type {ty:?}"),
            );
            return None;
        };
        let what = format!(
            "a {ty} state{}",
            if lang == Lang::Jsonata {
                " using JSONata"
            } else {
                ""
            }
        );
        self.unknown_fields(m, ptr, &fields, &what);

        let transition = if fields.contains(&"Next") {
            let next = self.string(m, ptr, "Next");
            let end = match m.get("End") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    self.err(at(ptr, "End"), SCHEMA, "End must be a boolean");
                    false
                }
            };
            match (next, end) {
                (Some(n), true) => {
                    self.err(ptr, SCHEMA, "a state cannot have both Next and End");
                    Transition::Next(n)
                }
                (Some(n), false) => Transition::Next(n),
                (None, true) => Transition::End,
                (None, false) => {
                    if !m.contains_key("Next") {
                        self.err(ptr, SCHEMA, "a state must have Next or End: true");
                    }
                    Transition::End
                }
            }
        } else {
            Transition::None
        };

        let input_path = self.data_path(m, ptr, "InputPath");
        let output_path = self.data_path(m, ptr, "OutputPath");
        let assign = self.assign(m, ptr, lang);
        let output = if lang == Lang::Jsonata {
            self.template(m, ptr, "Output", lang)
        } else {
            None
        };
        let params_key = if lang == Lang::Jsonata {
            "Arguments"
        } else {
            "Parameters"
        };

        let kind = match ty.as_str() {
            "Pass" => Kind::Pass {
                result: m.get("Result").cloned(),
                parameters: self.template(m, ptr, "Parameters", lang),
                result_path: self.result_path(m, ptr),
            },
            "Task" => {
                let resource = self.string(m, ptr, "Resource");
                if resource.is_none() && !m.contains_key("Resource") {
                    self.err(ptr, SCHEMA, "Resource is required in a Task state");
                }
                let timeout = self.num(m, ptr, "TimeoutSeconds", lang, 1.0, Some(99_999_999.0));
                let heartbeat = self.num(m, ptr, "HeartbeatSeconds", lang, 1.0, Some(99_999_999.0));
                if let (Some(Num::Lit(t)), Some(Num::Lit(h))) = (&timeout, &heartbeat) {
                    if h >= t {
                        self.err(
                            at(ptr, "HeartbeatSeconds"),
                            SCHEMA,
                            "HeartbeatSeconds must be smaller than TimeoutSeconds",
                        );
                    }
                }
                if let Some(c) = m.get("Credentials") {
                    self.credentials(c, &at(ptr, "Credentials"), lang);
                }
                let resource = match resource.as_deref().map(Resource::parse) {
                    Some(Ok(r)) => {
                        if let Some(why) = r.unrecognized() {
                            self.err(at(ptr, "Resource"), SCHEMA, why);
                        }
                        r
                    }
                    Some(Err(why)) => {
                        self.err(
                            at(ptr, "Resource"),
                            SCHEMA,
                            format!("Value is not a valid resource ARN: {why}"),
                        );
                        Resource::invalid()
                    }
                    None => Resource::invalid(),
                };
                Kind::Task {
                    resource: Arc::new(resource),
                    parameters: self.template(m, ptr, params_key, lang),
                    timeout,
                    heartbeat,
                    handling: self.handling(m, ptr, lang),
                }
            }
            "Choice" => self.choice(m, ptr, lang),
            "Wait" => {
                let present: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]
                    .into_iter()
                    .filter(|k| m.contains_key(*k))
                    .collect();
                if present.len() != 1 {
                    self.err(ptr, SCHEMA, "a Wait state needs exactly one of Seconds, SecondsPath, Timestamp or TimestampPath");
                }
                let wait = match present.first().copied() {
                    Some("SecondsPath") => {
                        self.path(m, ptr, "SecondsPath").map(WaitFor::SecondsPath)
                    }
                    Some("TimestampPath") => self
                        .path(m, ptr, "TimestampPath")
                        .map(WaitFor::TimestampPath),
                    Some("Timestamp") => {
                        let t = self.text(m, ptr, "Timestamp", lang);
                        if let Some(Text::Lit(s)) = &t {
                            if choice::parse_timestamp(s).is_none() {
                                self.err(
                                    at(ptr, "Timestamp"),
                                    SCHEMA,
                                    format!("{s:?} is not an ISO-8601 timestamp"),
                                );
                            }
                        }
                        t.map(WaitFor::Timestamp)
                    }
                    Some(_) => self
                        .num(m, ptr, "Seconds", lang, 0.0, Some(99_999_999.0))
                        .map(WaitFor::Seconds),
                    None => None,
                };
                Kind::Wait {
                    wait: wait.unwrap_or(WaitFor::Seconds(Num::Lit(0.0))),
                }
            }
            "Succeed" => Kind::Succeed,
            "Fail" => Kind::Fail {
                error: self.text(m, ptr, "Error", lang),
                cause: self.text(m, ptr, "Cause", lang),
            },
            "Parallel" => {
                let mut branches = Vec::new();
                match m.get("Branches").and_then(Value::as_array) {
                    Some(bs) if !bs.is_empty() => {
                        for (i, b) in bs.iter().enumerate() {
                            if let Some(sm) =
                                self.machine(b, &format!("{ptr}/Branches/{i}"), lang, false)
                            {
                                branches.push(Arc::new(sm));
                            }
                        }
                    }
                    _ => self.err(ptr, SCHEMA, "Branches must be a non-empty array"),
                }
                Kind::Parallel {
                    branches,
                    parameters: self.template(m, ptr, params_key, lang),
                    handling: self.handling(m, ptr, lang),
                }
            }
            "Map" => self.map(m, ptr, lang)?,
            _ => unreachable!("allowed() knows every type"),
        };
        Some(State {
            name: name.to_string(),
            lang,
            transition,
            input_path,
            output_path,
            assign,
            output,
            kind,
            uses_context: mentions_context(v),
        })
    }

    /// A Task's `Credentials`: an object holding the role to assume, as `RoleArn` (a
    /// string, or a JSONata expression) or `RoleArn.$` (a path or an intrinsic).
    fn credentials(&mut self, v: &Value, ptr: &str, lang: Lang) {
        let Some(cm) = v.as_object() else {
            self.err(
                ptr,
                SCHEMA,
                "Credentials must be an object that names the role to assume in RoleArn",
            );
            return;
        };
        let jp = lang == Lang::JsonPath;
        let fields: &[&str] = if jp {
            &["RoleArn", "RoleArn.$"]
        } else {
            &["RoleArn"]
        };
        self.unknown_fields(cm, ptr, fields, "Credentials");
        match (cm.get("RoleArn"), cm.get("RoleArn.$").filter(|_| jp)) {
            (Some(_), Some(_)) => {
                self.err(ptr, SCHEMA, "RoleArn and RoleArn.$ are mutually exclusive")
            }
            (None, None) => self.err(
                ptr,
                SCHEMA,
                if jp {
                    "These fields are required: [RoleArn] (or RoleArn.$)"
                } else {
                    "These fields are required: [RoleArn]"
                },
            ),
            (Some(Value::String(_)), None) => {
                self.template(cm, ptr, "RoleArn", lang);
            }
            (Some(_), None) => self.err(at(ptr, "RoleArn"), SCHEMA, "RoleArn must be a string"),
            (None, Some(Value::String(s))) => {
                if let Err(e) = compile_dollar(s, "RoleArn.$") {
                    self.err(at(ptr, "RoleArn.$"), JSON_PATH, e);
                }
            }
            (None, Some(_)) => self.err(
                at(ptr, "RoleArn.$"),
                SCHEMA,
                "RoleArn.$ must be a string holding a path or an intrinsic function",
            ),
        }
    }

    fn handling(&mut self, m: &Map<String, Value>, ptr: &str, lang: Lang) -> ResultHandling {
        let result_selector = self.template(m, ptr, "ResultSelector", lang);
        let result_path = self.result_path(m, ptr);
        let mut retry = Vec::new();
        if let Some(rv) = m.get("Retry") {
            let rptr = at(ptr, "Retry");
            match rv.as_array() {
                Some(rs) => {
                    for (i, r) in rs.iter().enumerate() {
                        let p = format!("{rptr}/{i}");
                        if let Some(rm) = self.obj(r, &p, "a retrier") {
                            self.unknown_fields(
                                rm,
                                &p,
                                &[
                                    "ErrorEquals",
                                    "IntervalSeconds",
                                    "MaxAttempts",
                                    "BackoffRate",
                                    "MaxDelaySeconds",
                                    "JitterStrategy",
                                    "Comment",
                                ],
                                "a retrier",
                            );
                            let error_equals = self.error_equals(rm, &p, i + 1 == rs.len());
                            let jitter_full = match rm.get("JitterStrategy") {
                                None => false,
                                Some(Value::String(s)) if s == "FULL" => true,
                                Some(Value::String(s)) if s == "NONE" => false,
                                Some(_) => {
                                    self.err(
                                        at(&p, "JitterStrategy"),
                                        SCHEMA,
                                        "JitterStrategy must be \"FULL\" or \"NONE\"",
                                    );
                                    false
                                }
                            };
                            retry.push(Retrier {
                                error_equals,
                                interval_seconds: self
                                    .number(rm, &p, "IntervalSeconds", 1.0, true)
                                    .unwrap_or(1.0),
                                max_attempts: self
                                    .number(rm, &p, "MaxAttempts", 0.0, true)
                                    .unwrap_or(3.0)
                                    as u32,
                                backoff_rate: self
                                    .number(rm, &p, "BackoffRate", 1.0, false)
                                    .unwrap_or(2.0),
                                max_delay_seconds: self.number(
                                    rm,
                                    &p,
                                    "MaxDelaySeconds",
                                    1.0,
                                    true,
                                ),
                                jitter_full,
                            });
                        }
                    }
                }
                None => self.err(rptr, SCHEMA, "Retry must be an array"),
            }
        }
        let mut catch = Vec::new();
        if let Some(cv) = m.get("Catch") {
            let cptr = at(ptr, "Catch");
            match cv.as_array() {
                Some(cs) => {
                    for (i, c) in cs.iter().enumerate() {
                        let p = format!("{cptr}/{i}");
                        if let Some(cm) = self.obj(c, &p, "a catcher") {
                            let fields: &[&str] = if lang == Lang::Jsonata {
                                &["ErrorEquals", "Next", "Output", "Assign", "Comment"]
                            } else {
                                &["ErrorEquals", "Next", "ResultPath", "Assign", "Comment"]
                            };
                            self.unknown_fields(cm, &p, fields, "a catcher");
                            let error_equals = self.error_equals(cm, &p, i + 1 == cs.len());
                            let next = self.string(cm, &p, "Next");
                            if next.is_none() && !cm.contains_key("Next") {
                                self.err(&p, SCHEMA, "a catcher needs Next");
                            }
                            let result_path = self.result_path(cm, &p);
                            let assign = self.assign(cm, &p, lang);
                            let output = if lang == Lang::Jsonata {
                                self.template(cm, &p, "Output", lang)
                            } else {
                                None
                            };
                            // Without Next there is no transition to check: the
                            // diagnostic above says what is wrong.
                            if let Some(next) = next {
                                catch.push(Catcher {
                                    error_equals,
                                    next,
                                    result_path,
                                    assign,
                                    output,
                                });
                            }
                        }
                    }
                }
                None => self.err(cptr, SCHEMA, "Catch must be an array"),
            }
        }
        ResultHandling {
            result_selector,
            result_path,
            retry,
            catch,
        }
    }

    fn error_equals(&mut self, m: &Map<String, Value>, ptr: &str, last: bool) -> Vec<String> {
        let p = at(ptr, "ErrorEquals");
        let Some(arr) = m
            .get("ErrorEquals")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        else {
            self.err(
                ptr,
                SCHEMA,
                "ErrorEquals must be a non-empty array of error names",
            );
            return Vec::new();
        };
        let names: Vec<String> = arr
            .iter()
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect();
        if names.len() != arr.len() {
            self.err(&p, SCHEMA, "ErrorEquals must hold strings");
        }
        if names.iter().any(|n| n == shoal_expr::errors::ALL) {
            if names.len() > 1 {
                self.err(&p, SCHEMA, "States.ALL must appear alone in ErrorEquals");
            }
            if !last {
                self.err(
                    &p,
                    SCHEMA,
                    "States.ALL must be in the last retrier or catcher",
                );
            }
        }
        names
    }

    fn choice(&mut self, m: &Map<String, Value>, ptr: &str, lang: Lang) -> Kind {
        let cptr = at(ptr, "Choices");
        let mut choices = Vec::new();
        match m.get("Choices").and_then(Value::as_array) {
            Some(cs) if !cs.is_empty() => {
                for (i, c) in cs.iter().enumerate() {
                    let p = format!("{cptr}/{i}");
                    let Some(cm) = self.obj(c, &p, "a choice rule") else {
                        continue;
                    };
                    let next = self.string(cm, &p, "Next");
                    if next.is_none() && !cm.contains_key("Next") {
                        self.err(&p, SCHEMA, "a choice rule needs Next");
                    }
                    let (rule, assign, output) = if lang == Lang::Jsonata {
                        self.unknown_fields(
                            cm,
                            &p,
                            &["Condition", "Next", "Assign", "Output", "Comment"],
                            "a JSONata choice rule",
                        );
                        let cond = match cm.get("Condition") {
                            Some(Value::Bool(_)) | Some(Value::String(_)) => {
                                self.template(cm, &p, "Condition", lang)
                            }
                            Some(_) => {
                                self.err(
                                    at(&p, "Condition"),
                                    SCHEMA,
                                    "Condition must be a boolean or a {% %} expression",
                                );
                                None
                            }
                            None => {
                                self.err(&p, SCHEMA, "a JSONata choice rule needs Condition");
                                None
                            }
                        };
                        (
                            cond.map(ChoiceCond::Condition),
                            self.assign(cm, &p, lang),
                            self.template(cm, &p, "Output", lang),
                        )
                    } else {
                        (
                            self.rule(cm, &p, true).map(ChoiceCond::Rule),
                            self.assign(cm, &p, lang),
                            None,
                        )
                    };
                    if let (Some(rule), Some(next)) = (rule, next) {
                        choices.push(ChoiceBranch {
                            rule,
                            next,
                            assign,
                            output,
                        });
                    }
                }
            }
            _ => self.err(ptr, SCHEMA, "Choices must be a non-empty array"),
        }
        Kind::Choice {
            choices,
            default: self.string(m, ptr, "Default"),
        }
    }

    fn rule(&mut self, m: &Map<String, Value>, ptr: &str, top: bool) -> Option<Rule> {
        for k in m.keys() {
            let known = matches!(
                k.as_str(),
                "Variable" | "And" | "Or" | "Not" | "Comment" | "Assign"
            ) || (top && k == "Next")
                || choice::operator(k).is_some()
                || matches!(
                    k.as_str(),
                    "StringMatches"
                        | "IsNull"
                        | "IsPresent"
                        | "IsNumeric"
                        | "IsString"
                        | "IsBoolean"
                        | "IsTimestamp"
                );
            if !known {
                self.err(
                    at(ptr, k),
                    SCHEMA,
                    format!("field {k:?} is not supported in a choice rule"),
                );
            }
        }
        if !top && m.contains_key("Next") {
            self.err(
                at(ptr, "Next"),
                SCHEMA,
                "a nested choice rule cannot have Next",
            );
        }
        if let Some(v) = m.get("Not") {
            let p = at(ptr, "Not");
            let inner = self.obj(v, &p, "Not")?;
            return Some(Rule::Not(Box::new(self.rule(inner, &p, false)?)));
        }
        for (k, is_and) in [("And", true), ("Or", false)] {
            if let Some(v) = m.get(k) {
                let p = at(ptr, k);
                let Some(arr) = v.as_array().filter(|a| !a.is_empty()) else {
                    self.err(
                        &p,
                        SCHEMA,
                        format!("{k} must be a non-empty array of rules"),
                    );
                    return None;
                };
                let mut rules = Vec::new();
                for (i, r) in arr.iter().enumerate() {
                    let rp = format!("{p}/{i}");
                    if let Some(rm) = self.obj(r, &rp, "a choice rule") {
                        if let Some(rule) = self.rule(rm, &rp, false) {
                            rules.push(rule);
                        }
                    }
                }
                return Some(if is_and {
                    Rule::And(rules)
                } else {
                    Rule::Or(rules)
                });
            }
        }
        let ops: Vec<&String> = m
            .keys()
            .filter(|k| !matches!(k.as_str(), "Variable" | "Next" | "Comment" | "Assign"))
            .collect();
        if ops.is_empty() {
            self.err(
                ptr,
                SCHEMA,
                "a choice rule needs a comparison operator, And, Or or Not",
            );
            return None;
        }
        if ops.len() > 1 {
            self.err(
                ptr,
                SCHEMA,
                "a choice rule has more than one comparison operator",
            );
        }
        let variable = match self.path(m, ptr, "Variable") {
            Some(p) => p,
            None => {
                if !m.contains_key("Variable") {
                    self.err(ptr, SCHEMA, "a comparison needs Variable");
                }
                return None;
            }
        };
        let op = ops[0].as_str();
        let v = &m[op];
        let p = at(ptr, op);
        let bool_of = |cx: &mut Cx| match v {
            Value::Bool(b) => Some(*b),
            _ => {
                cx.err(&p, SCHEMA, format!("{op} must be a boolean"));
                None
            }
        };
        let test = match op {
            "IsNull" => Test::IsNull(bool_of(self)?),
            "IsPresent" => Test::IsPresent(bool_of(self)?),
            "IsNumeric" => Test::IsNumeric(bool_of(self)?),
            "IsString" => Test::IsString(bool_of(self)?),
            "IsBoolean" => Test::IsBoolean(bool_of(self)?),
            "IsTimestamp" => Test::IsTimestamp(bool_of(self)?),
            "StringMatches" => match v.as_str() {
                Some(s) => Test::StringMatches(s.to_string()),
                None => {
                    self.err(&p, SCHEMA, "StringMatches must be a string");
                    return None;
                }
            },
            _ => {
                let (Some((kind, cmp)), is_path) = choice::operator(op)? else {
                    return None;
                };
                let operand = if is_path {
                    match v.as_str().map(Path::parse) {
                        Some(Ok(path)) => Operand::Path(path),
                        Some(Err(e)) => {
                            self.err(&p, JSON_PATH, e.to_string());
                            return None;
                        }
                        None => {
                            self.err(&p, SCHEMA, format!("{op} must be a path string"));
                            return None;
                        }
                    }
                } else {
                    let ok = match kind {
                        choice::Kind::String => v.is_string(),
                        choice::Kind::Numeric => v.is_number(),
                        choice::Kind::Boolean => v.is_boolean(),
                        choice::Kind::Timestamp => {
                            v.as_str().and_then(choice::parse_timestamp).is_some()
                        }
                    };
                    if !ok {
                        self.err(&p, SCHEMA, format!("{op} has a value of the wrong type"));
                        return None;
                    }
                    Operand::Literal(v.clone())
                };
                Test::Compare(kind, cmp, operand)
            }
        };
        Some(Rule::Test { variable, test })
    }

    fn map(&mut self, m: &Map<String, Value>, ptr: &str, lang: Lang) -> Option<Kind> {
        let (pkey, pv) = match (m.get("ItemProcessor"), m.get("Iterator")) {
            (Some(p), None) => ("ItemProcessor", p),
            (None, Some(i)) => ("Iterator", i),
            (Some(_), Some(_)) => {
                self.err(
                    ptr,
                    SCHEMA,
                    "ItemProcessor and Iterator are mutually exclusive",
                );
                ("ItemProcessor", &m["ItemProcessor"])
            }
            (None, None) => {
                self.err(
                    ptr,
                    SCHEMA,
                    "a Map state needs ItemProcessor (or the legacy Iterator)",
                );
                return None;
            }
        };
        let pptr = at(ptr, pkey);
        let mut mode = MapMode::Inline;
        if let Some(cfg) = pv.get("ProcessorConfig") {
            let cp = at(&pptr, "ProcessorConfig");
            if let Some(cm) = self.obj(cfg, &cp, "ProcessorConfig") {
                self.unknown_fields(cm, &cp, &["Mode", "ExecutionType"], "ProcessorConfig");
                match cm.get("Mode").and_then(Value::as_str) {
                    None | Some("INLINE") => {}
                    Some("DISTRIBUTED") => {
                        let express = match cm.get("ExecutionType").and_then(Value::as_str) {
                            Some("EXPRESS") => true,
                            Some("STANDARD") => false,
                            _ => {
                                self.err(&cp, SCHEMA, "a DISTRIBUTED processor needs ExecutionType STANDARD or EXPRESS");
                                false
                            }
                        };
                        mode = MapMode::Distributed { express };
                    }
                    Some(other) => self.err(
                        at(&cp, "Mode"),
                        SCHEMA,
                        format!("unknown Mode {other:?}: use INLINE or DISTRIBUTED"),
                    ),
                }
            }
        }
        let processor = self.machine(pv, &pptr, lang, false)?;
        if m.contains_key("ItemSelector") && m.contains_key("Parameters") {
            self.err(
                ptr,
                SCHEMA,
                "ItemSelector and Parameters are mutually exclusive",
            );
        }
        let item_selector = self
            .template(m, ptr, "ItemSelector", lang)
            .or_else(|| self.template(m, ptr, "Parameters", lang));
        let distributed = matches!(mode, MapMode::Distributed { .. });
        for k in ["ItemReader", "ItemBatcher", "ResultWriter"] {
            if m.contains_key(k) && !distributed {
                self.err(
                    at(ptr, k),
                    SCHEMA,
                    format!("{k} needs ProcessorConfig Mode DISTRIBUTED"),
                );
            }
        }
        let label = self.string(m, ptr, "Label");
        if let Some(l) = &label {
            let bad = l.is_empty()
                || l.chars().count() > 40
                || l.chars()
                    .any(|c| c.is_control() || " ?*<>{}[]:;,\\|^~$#%&`\"".contains(c));
            if bad {
                self.err(at(ptr, "Label"), SCHEMA, "Label must be 1 to 40 characters with no spaces, control characters or ?*<>{}[]:;,\\|^~$#%&`\"");
            }
        }
        let item_reader = m
            .get("ItemReader")
            .and_then(|v| self.item_reader(v, &at(ptr, "ItemReader"), lang));
        let item_batcher = m.get("ItemBatcher").and_then(|v| {
            let bp = at(ptr, "ItemBatcher");
            let bm = self.obj(v, &bp, "ItemBatcher")?;
            self.unknown_fields(
                bm,
                &bp,
                &[
                    "MaxItemsPerBatch",
                    "MaxItemsPerBatchPath",
                    "MaxInputBytesPerBatch",
                    "MaxInputBytesPerBatchPath",
                    "BatchInput",
                ],
                "ItemBatcher",
            );
            Some(ItemBatcher {
                max_items_per_batch: self.num(bm, &bp, "MaxItemsPerBatch", lang, 1.0, None),
                max_input_bytes_per_batch: self.num(
                    bm,
                    &bp,
                    "MaxInputBytesPerBatch",
                    lang,
                    1.0,
                    Some(262_144.0),
                ),
                batch_input: self.template(bm, &bp, "BatchInput", lang),
            })
        });
        let result_writer = m.get("ResultWriter").and_then(|v| {
            let wp = at(ptr, "ResultWriter");
            let wm = self.obj(v, &wp, "ResultWriter")?;
            let params_key = if lang == Lang::Jsonata {
                "Arguments"
            } else {
                "Parameters"
            };
            self.unknown_fields(
                wm,
                &wp,
                &["Resource", params_key, "WriterConfig"],
                "ResultWriter",
            );
            let config = match wm.get("WriterConfig") {
                None => WriterConfig::default(),
                Some(Value::Object(wc)) => {
                    let cp = at(&wp, "WriterConfig");
                    self.unknown_fields(wc, &cp, &["OutputType", "Transformation"], "WriterConfig");
                    if wc.is_empty() {
                        self.err(
                            &cp,
                            SCHEMA,
                            "WriterConfig needs OutputType or Transformation",
                        );
                    }
                    WriterConfig {
                        output_type: self
                            .one_of(
                                wc,
                                &cp,
                                "OutputType",
                                &[("JSON", OutputType::Json), ("JSONL", OutputType::Jsonl)],
                            )
                            .unwrap_or_default(),
                        transformation: self
                            .one_of(
                                wc,
                                &cp,
                                "Transformation",
                                &[
                                    ("NONE", WriterTransformation::None),
                                    ("COMPACT", WriterTransformation::Compact),
                                    ("FLATTEN", WriterTransformation::Flatten),
                                ],
                            )
                            .unwrap_or_default(),
                    }
                }
                Some(_) => {
                    self.err(
                        at(&wp, "WriterConfig"),
                        SCHEMA,
                        "WriterConfig must be an object",
                    );
                    WriterConfig::default()
                }
            };
            Some(ResultWriter {
                resource: self.string(wm, &wp, "Resource"),
                parameters: self.template(wm, &wp, params_key, lang),
                config,
            })
        });
        let processor_source = distributed.then(|| {
            let name = |l: Lang| match l {
                Lang::Jsonata => "JSONata",
                Lang::JsonPath => "JSONPath",
            };
            let mut src = pv.clone();
            if let Some(o) = src.as_object_mut() {
                o.remove("ProcessorConfig");
                // The machine's own QueryLanguage at the top, so that a JSONPath state
                // under a JSONata Map stays valid on its own; the Map's on each state
                // that inherits it.
                o.insert("QueryLanguage".into(), name(self.top_lang).into());
                if lang != self.top_lang {
                    if let Some(Value::Object(states)) = o.get_mut("States") {
                        for st in states.values_mut().filter_map(Value::as_object_mut) {
                            st.entry("QueryLanguage").or_insert(name(lang).into());
                        }
                    }
                }
            }
            Arc::new(src)
        });
        Some(Kind::Map(Box::new(MapState {
            processor: Arc::new(processor),
            processor_source,
            mode,
            items_path: if m.contains_key("ItemsPath") {
                self.path(m, ptr, "ItemsPath")
            } else {
                None
            },
            items: self.template(m, ptr, "Items", lang),
            item_selector,
            max_concurrency: self.num(m, ptr, "MaxConcurrency", lang, 0.0, None),
            tolerated_failure_count: self.num(m, ptr, "ToleratedFailureCount", lang, 0.0, None),
            tolerated_failure_percentage: self.num(
                m,
                ptr,
                "ToleratedFailurePercentage",
                lang,
                0.0,
                Some(100.0),
            ),
            item_reader,
            item_batcher,
            result_writer,
            label,
            handling: self.handling(m, ptr, lang),
        })))
    }

    fn item_reader(&mut self, v: &Value, ptr: &str, lang: Lang) -> Option<ItemReader> {
        let m = self.obj(v, ptr, "ItemReader")?;
        let params_key = if lang == Lang::Jsonata {
            "Arguments"
        } else {
            "Parameters"
        };
        self.unknown_fields(
            m,
            ptr,
            &["Resource", params_key, "ReaderConfig"],
            "ItemReader",
        );
        let resource = match self.string(m, ptr, "Resource").as_deref() {
            Some("arn:aws:states:::s3:listObjectsV2") => ReaderResource::ListObjectsV2,
            Some("arn:aws:states:::s3:getObject") => ReaderResource::GetObject,
            other => {
                self.err(
                    at(ptr, "Resource"),
                    SCHEMA,
                    format!(
                        "unsupported ItemReader resource {:?}: use arn:aws:states:::s3:listObjectsV2 or arn:aws:states:::s3:getObject",
                        other.unwrap_or_default()
                    ),
                );
                ReaderResource::GetObject
            }
        };
        let rp = at(ptr, "ReaderConfig");
        let empty = Map::new();
        let rc = match m.get("ReaderConfig") {
            None => &empty,
            Some(Value::Object(rc)) => rc,
            Some(_) => {
                self.err(&rp, SCHEMA, "ReaderConfig must be an object");
                &empty
            }
        };
        self.unknown_fields(
            rc,
            &rp,
            &[
                "InputType",
                "Transformation",
                "ManifestType",
                "CSVDelimiter",
                "CSVHeaderLocation",
                "CSVHeaders",
                "ItemsPointer",
                "MaxItems",
                "MaxItemsPath",
            ],
            "ReaderConfig",
        );
        let input_type = self.one_of(
            rc,
            &rp,
            "InputType",
            &[
                ("CSV", InputType::Csv),
                ("JSON", InputType::Json),
                ("JSONL", InputType::Jsonl),
                ("PARQUET", InputType::Parquet),
                ("MANIFEST", InputType::Manifest),
            ],
        );
        let csv_delimiter = self
            .one_of(
                rc,
                &rp,
                "CSVDelimiter",
                &[
                    ("COMMA", CsvDelimiter::Comma),
                    ("PIPE", CsvDelimiter::Pipe),
                    ("SEMICOLON", CsvDelimiter::Semicolon),
                    ("SPACE", CsvDelimiter::Space),
                    ("TAB", CsvDelimiter::Tab),
                ],
            )
            .unwrap_or_default();
        let given = self.one_of(
            rc,
            &rp,
            "CSVHeaderLocation",
            &[("FIRST_ROW", false), ("GIVEN", true)],
        );
        let csv_headers = match given {
            Some(true) => match rc.get("CSVHeaders").and_then(Value::as_array) {
                Some(h) => CsvHeaders::Given(
                    h.iter()
                        .map(|h| h.as_str().unwrap_or_default().to_string())
                        .collect(),
                ),
                None => {
                    self.err(&rp, SCHEMA, "CSVHeaderLocation GIVEN needs CSVHeaders");
                    CsvHeaders::FirstRow
                }
            },
            _ => CsvHeaders::FirstRow,
        };
        let transformation = self
            .one_of(
                rc,
                &rp,
                "Transformation",
                &[
                    ("NONE", ReaderTransformation::None),
                    ("LOAD_AND_FLATTEN", ReaderTransformation::LoadAndFlatten),
                ],
            )
            .unwrap_or_default();
        let manifest_type = self.one_of(
            rc,
            &rp,
            "ManifestType",
            &[
                ("ATHENA_DATA", ManifestType::AthenaData),
                ("S3_INVENTORY", ManifestType::S3Inventory),
            ],
        );
        let items_pointer = rc
            .get("ItemsPointer")
            .and_then(Value::as_str)
            .map(str::to_string);
        // MaxItems is checked at run time, where AWS checks it.
        let max_items = match (rc.get("MaxItems"), rc.get("MaxItemsPath")) {
            (Some(_), Some(_)) => {
                self.err(
                    &rp,
                    SCHEMA,
                    "ReaderConfig may have MaxItems or MaxItemsPath, not both",
                );
                None
            }
            (_, Some(_)) => self.path(rc, &rp, "MaxItemsPath").map(Num::Path),
            (Some(Value::String(s)), None) if lang == Lang::Jsonata => {
                shoal_expr::jsonata::compile(s).ok().map(Num::Expr)
            }
            (Some(n), None) => match n.as_f64() {
                Some(f) => Some(Num::Lit(f)),
                None => {
                    self.err(at(&rp, "MaxItems"), SCHEMA, "MaxItems must be a number");
                    None
                }
            },
            _ => None,
        };
        Some(ItemReader {
            resource,
            parameters: self
                .template(m, ptr, params_key, lang)
                .unwrap_or(Template::Literal(Value::Object(Map::new()))),
            config: Arc::new(ReaderConfig {
                input_type,
                transformation,
                manifest_type,
                csv_delimiter,
                csv_headers,
                items_pointer,
            }),
            max_items,
        })
    }

    /// A field that must be one of a few names; a diagnostic names them all.
    fn one_of<T: Copy>(
        &mut self,
        m: &Map<String, Value>,
        ptr: &str,
        key: &str,
        names: &[(&str, T)],
    ) -> Option<T> {
        let v = m.get(key)?;
        let found = v
            .as_str()
            .and_then(|s| names.iter().find(|(n, _)| *n == s).map(|(_, t)| *t));
        if found.is_none() {
            let all: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
            self.err(
                at(ptr, key),
                SCHEMA,
                format!("{key} must be one of {}", all.join(", ")),
            );
        }
        found
    }
}

/// Does this intrinsic return a string, as ErrorPath and CausePath need? The list is
/// AWS's (amazon-states-language-service, INVALID_JSON_PATH_OR_INTRINSIC_STRING_ONLY).
fn returns_string(f: Func) -> bool {
    matches!(
        f,
        Func::ArrayGetItem
            | Func::Base64Encode
            | Func::Base64Decode
            | Func::Format
            | Func::JsonToString
            | Func::Hash
            | Func::Uuid
    )
}

/// Could any expression of this state read the context object? Over-approximates
/// (any string naming `$$` or `context` counts), so the engine can skip building it.
fn mentions_context(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("$$") || s.contains("context") || whole_states(s),
        Value::Array(a) => a.iter().any(mentions_context),
        Value::Object(o) => o
            .iter()
            .any(|(k, v)| k.contains("$$") || mentions_context(v)),
        _ => false,
    }
}

/// Whether JSONata text reads `$states` as a whole (`{% $states %}`), which holds
/// the context object, rather than one of its fields (`$states.input`).
fn whole_states(s: &str) -> bool {
    s.match_indices("$states")
        .any(|(i, m)| !s[i + m.len()..].starts_with('.'))
}

/// Every transition target of a state, with the pointer of the field naming it.
fn targets(st: &State, ptr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Transition::Next(n) = &st.transition {
        out.push((at(ptr, "Next"), n.clone()));
    }
    if let Kind::Choice { choices, default } = &st.kind {
        for (i, c) in choices.iter().enumerate() {
            out.push((format!("{ptr}/Choices/{i}/Next"), c.next.clone()));
        }
        if let Some(d) = default {
            out.push((at(ptr, "Default"), d.clone()));
        }
    }
    if let Some(o) = st.kind.handling() {
        for (i, c) in o.catch.iter().enumerate() {
            out.push((format!("{ptr}/Catch/{i}/Next"), c.next.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ValidateStateMachineDefinition's answers recorded on AWS
    /// (`../shared/api-cases/validation`), diagnostic for diagnostic.
    #[test]
    fn validation_reports_as_aws_recorded_them() {
        let fail = |code: &str, location: &str, message: &str| {
            serde_json::json!({"result": "FAIL", "truncated": false, "diagnostics": [
                {"severity": "ERROR", "code": code, "location": location, "message": message}
            ]})
        };
        assert_eq!(
            parse("{}").validation_report(),
            fail(SCHEMA, "/", "These fields are required: [States, StartAt]")
        );
        assert_eq!(
            parse(r#"{"States": {"StartState": {"Type": "Pass", "End": true}}}"#)
                .validation_report(),
            fail(SCHEMA, "/", "These fields are required: [StartAt]")
        );
        assert_eq!(
            parse(r#"{"StartAt": "Pass", "States": {"Pass": {"Type": "Pass", "End": true, "QueryLanguage": "JSONPath"}}, "QueryLanguage": "JSONata"}"#)
                .validation_report(),
            fail(SCHEMA, "/States/Pass", "'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine")
        );
        // AWS gives no location for this one.
        assert_eq!(
            parse(" ").validation_report(),
            serde_json::json!({"result": "FAIL", "truncated": false, "diagnostics": [
                {"severity": "ERROR", "code": SCHEMA, "message": "Definition must be a valid JSON object"}
            ]})
        );
    }

    /// A distributed processor travels as a definition of its own: it must parse alone
    /// to the same languages, also when a JSONPath state sits under a JSONata Map.
    #[test]
    fn a_processor_source_parses_alone_to_the_same_languages() {
        let text = include_str!("../tests/fixtures/valid/jsonpath-inside-jsonata-map.json");
        let parsed = parse(text);
        assert!(parsed.is_valid(), "{:?}", parsed.diagnostics);
        let machine = parsed.machine.unwrap();
        let Kind::Map(m) = &machine.states["Distributed"].kind else {
            panic!("a Map")
        };
        let alone = parse_value(m.processor_source.as_deref().unwrap());
        assert!(alone.is_valid(), "{:?}", alone.diagnostics);
        let alone = alone.machine.unwrap();
        for name in ["First", "Second"] {
            assert_eq!(
                alone.states[name].lang, m.processor.states[name].lang,
                "{name}"
            );
        }
        assert_eq!(alone.states["First"].lang, Lang::Jsonata);
        assert_eq!(alone.states["Second"].lang, Lang::JsonPath);
    }
}
