//! State machines and what hangs off them: revisions, logging and tracing settings,
//! versions, aliases and tags, with AWS's request fields, shapes and errors.

use crate::api::{check_name, opt_bool, opt_str, page, req_str, secs, sm_arn, validation, R};
use crate::{ApiError, Server};
use serde_json::{json, Map, Value};
use shoal_store::{AliasRecord, ExecutionOrigin, Route, StateMachineRecord, Version};

/// What a state machine ARN names: the machine, one of its versions, or an alias.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MachineArn {
    Machine(String),
    Version { machine: String, number: u32 },
    Alias { machine: String, name: String },
}

impl MachineArn {
    pub(crate) fn parse(arn: &str) -> R<MachineArn> {
        let parts: Vec<&str> = arn.split(':').collect();
        let ok = parts.len() >= 7
            && parts[0] == "arn"
            && parts[2] == "states"
            && parts[5] == "stateMachine"
            && !parts[6].is_empty();
        if !ok || parts.len() > 8 {
            return Err(ApiError::new("InvalidArn", format!("Invalid Arn: '{arn}'")));
        }
        let machine = parts[..7].join(":");
        Ok(match parts.get(7) {
            None => MachineArn::Machine(machine),
            Some(q) => match q.parse::<u32>() {
                Ok(number) => MachineArn::Version { machine, number },
                Err(_) => MachineArn::Alias {
                    machine,
                    name: q.to_string(),
                },
            },
        })
    }
}

/// `loggingConfiguration`, as the API takes and returns it.
#[derive(Debug, Clone, PartialEq)]
struct Logging {
    level: LogLevel,
    include_execution_data: bool,
    /// Absent when the request had no `destinations` (AWS then returns none).
    destinations: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LogLevel {
    All,
    Error,
    Fatal,
    Off,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::All => "ALL",
            LogLevel::Error => "ERROR",
            LogLevel::Fatal => "FATAL",
            LogLevel::Off => "OFF",
        }
    }
}

impl Default for Logging {
    fn default() -> Logging {
        Logging {
            level: LogLevel::Off,
            include_execution_data: false,
            destinations: None,
        }
    }
}

impl Logging {
    fn from_request(v: &Value) -> R<Logging> {
        let Some(o) = v.as_object() else {
            return Err(ApiError::new(
                "SerializationException",
                "loggingConfiguration must be an object",
            ));
        };
        let level = match o.get("level").and_then(Value::as_str) {
            None => LogLevel::Off,
            Some("ALL") => LogLevel::All,
            Some("ERROR") => LogLevel::Error,
            Some("FATAL") => LogLevel::Fatal,
            Some("OFF") => LogLevel::Off,
            Some(other) => {
                return Err(ApiError::new(
                    "ValidationException",
                    format!("1 validation error detected: Value '{other}' at 'loggingConfiguration.level' failed to satisfy constraint: Member must satisfy enum value set: [ALL, ERROR, FATAL, OFF]"),
                ))
            }
        };
        let destinations = match o.get("destinations") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|d| {
                        d.pointer("/cloudWatchLogsLogGroup/logGroupArn")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .ok_or_else(|| {
                                ApiError::new(
                                    "InvalidLoggingConfiguration",
                                    "Invalid Logging Configuration: a destination needs cloudWatchLogsLogGroup.logGroupArn",
                                )
                            })
                    })
                    .collect::<R<Vec<_>>>()?,
            ),
            Some(_) => {
                return Err(ApiError::new(
                    "SerializationException",
                    "loggingConfiguration.destinations must be a list",
                ))
            }
        };
        let count = destinations.as_ref().map_or(0, Vec::len);
        if count > 1 || (level != LogLevel::Off && count == 0) {
            return Err(ApiError::new(
                "InvalidLoggingConfiguration",
                "Invalid Logging Configuration: Must specify exactly one Log Destination.",
            ));
        }
        Ok(Logging {
            level,
            include_execution_data: opt_bool(v, "includeExecutionData")?,
            destinations,
        })
    }

    fn to_json(&self) -> Value {
        let mut v = json!({"level": self.level.as_str(), "includeExecutionData": self.include_execution_data});
        if let Some(d) = &self.destinations {
            v["destinations"] = d
                .iter()
                .map(|a| json!({"cloudWatchLogsLogGroup": {"logGroupArn": a}}))
                .collect();
        }
        v
    }

    /// The stored form is the API's own JSON: the server alone knows that shape.
    fn stored(rec: &StateMachineRecord) -> Logging {
        rec.logging
            .as_deref()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .and_then(|v| Logging::from_request(&v).ok())
            .unwrap_or_default()
    }
}

fn tracing_enabled(p: &Value) -> R<Option<bool>> {
    match p.get("tracingConfiguration") {
        None | Some(Value::Null) => Ok(None),
        Some(t) => opt_bool(t, "enabled").map(Some),
    }
}

fn version_arn(machine: &str, number: u32) -> String {
    format!("{machine}:{number}")
}

/// The fields DescribeStateMachine and DescribeStateMachineForExecution share.
fn config_fields(m: &StateMachineRecord, definition: &str, out: &mut Map<String, Value>) {
    out.insert("definition".into(), json!(definition));
    out.insert("name".into(), json!(m.name));
    out.insert("roleArn".into(), json!(m.role_arn));
    out.insert("loggingConfiguration".into(), Logging::stored(m).to_json());
    out.insert("tracingConfiguration".into(), json!({"enabled": m.tracing}));
    out.insert(
        "encryptionConfiguration".into(),
        json!({"type": "AWS_OWNED_KEY"}),
    );
    if let Some(r) = &m.revision_id {
        out.insert("revisionId".into(), json!(r));
    }
    let refs = variable_references(definition);
    if !refs.is_empty() {
        out.insert("variableReferences".into(), Value::Object(refs));
    }
}

/// `variableReferences`: for each state, the variables its fields read.
fn variable_references(definition: &str) -> Map<String, Value> {
    let mut out = Map::new();
    if let Ok(v) = serde_json::from_str::<Value>(definition) {
        for (state, vars) in shoal_asl::variable_references(&v) {
            out.insert(state, vars.into_iter().map(Value::String).collect());
        }
    }
    out
}

impl Server {
    pub(crate) fn machine_record(&self, arn: &str) -> R<StateMachineRecord> {
        let does_not_exist = || {
            ApiError::new(
                "StateMachineDoesNotExist",
                format!("State Machine Does Not Exist: '{arn}'"),
            )
        };
        match MachineArn::parse(arn)? {
            MachineArn::Alias { .. } => Err(does_not_exist()),
            _ => self.db.state_machine(arn)?.ok_or_else(does_not_exist),
        }
    }

    /// The machine row a StartExecution on `arn` runs, and how it was reached.
    pub(crate) fn resolve_for_start(
        &self,
        arn: &str,
    ) -> R<(StateMachineRecord, StateMachineRecord, ExecutionOrigin)> {
        match MachineArn::parse(arn)? {
            MachineArn::Machine(m) => {
                let rec = self.machine_record(&m)?;
                Ok((rec.clone(), rec, ExecutionOrigin::default()))
            }
            MachineArn::Version { machine, .. } => {
                let version = self.machine_record(arn)?;
                let base = self.machine_record(&machine)?;
                Ok((
                    base,
                    version,
                    ExecutionOrigin {
                        version_arn: Some(arn.to_string()),
                        alias_arn: None,
                    },
                ))
            }
            MachineArn::Alias { machine, .. } => {
                let alias = self.alias_record(arn)?;
                let base = self.machine_record(&machine)?;
                let version_arn = self.route(&alias);
                let version = self.machine_record(&version_arn)?;
                Ok((
                    base,
                    version,
                    ExecutionOrigin {
                        version_arn: Some(version_arn),
                        alias_arn: Some(arn.to_string()),
                    },
                ))
            }
        }
    }

    /// Picks a version by the alias's routing weights.
    fn route(&self, alias: &AliasRecord) -> String {
        let total: u32 = alias.routing.iter().map(|r| r.weight).sum();
        if total > 0 {
            use shoal_expr::Entropy;
            let mut pick = (self.runtime.entropy().next_u64() % u64::from(total)) as u32;
            for r in &alias.routing {
                if pick < r.weight {
                    return r.version_arn.clone();
                }
                pick -= r.weight;
            }
        }
        alias
            .routing
            .first()
            .map(|r| r.version_arn.clone())
            .unwrap_or_default()
    }

    pub(crate) fn create_state_machine(&self, p: &Value) -> R {
        let name = req_str(p, "name")?;
        check_name(name)?;
        let role = opt_str(p, "roleArn")?.unwrap_or("arn:aws:iam::123456789012:role/shoal");
        let kind = opt_str(p, "type")?.unwrap_or("STANDARD");
        let definition = Self::definition(p, kind == "EXPRESS")?;
        if !matches!(kind, "STANDARD" | "EXPRESS") {
            return Err(validation(
                "type",
                "Member must satisfy enum value set: [STANDARD, EXPRESS]",
            ));
        }
        let publish = opt_bool(p, "publish")?;
        let description = opt_str(p, "versionDescription")?;
        if description.is_some() && !publish {
            return Err(ApiError::new(
                "ValidationException",
                "Version description can only be set when publish is true",
            ));
        }
        let logging = match p.get("loggingConfiguration") {
            None | Some(Value::Null) => None,
            Some(l) => Some(Logging::from_request(l)?.to_json().to_string()),
        };
        let rec = StateMachineRecord {
            arn: sm_arn(name),
            name: name.to_string(),
            definition,
            role_arn: role.to_string(),
            kind: kind.to_string(),
            created_ms: self.runtime.now_ms(),
            updated_ms: None,
            revision_id: None,
            description: None,
            logging,
            tracing: tracing_enabled(p)?.unwrap_or(false),
            version: None,
            last_version: 0,
        };
        let created = if self.db.create_state_machine(&rec)? {
            rec
        } else {
            let old = self.machine_record(&rec.arn)?;
            // AWS answers an identical request with the existing machine.
            if old.definition != rec.definition
                || old.role_arn != rec.role_arn
                || old.kind != rec.kind
                || Logging::stored(&old) != Logging::stored(&rec)
                || old.tracing != rec.tracing
            {
                return Err(ApiError::new(
                    "StateMachineAlreadyExists",
                    format!("State Machine Already Exists: '{}'", rec.arn),
                ));
            }
            old
        };
        self.db.tag(&created.arn, &tags_of(p, "tags")?)?;
        let mut v =
            json!({"stateMachineArn": created.arn, "creationDate": secs(created.created_ms)});
        if publish {
            let (version, _) = self.publish(&created.arn, description)?;
            v["stateMachineVersionArn"] = json!(version.arn);
        }
        Ok(v)
    }

    pub(crate) fn update_state_machine(&self, p: &Value) -> R {
        let arn = req_str(p, "stateMachineArn")?;
        let old = match MachineArn::parse(arn)? {
            MachineArn::Machine(_) => self.machine_record(arn)?,
            _ => {
                return Err(ApiError::new(
                    "ValidationException",
                    format!("Invalid Arn: '{arn}': only a state machine can be updated"),
                ))
            }
        };
        let publish = opt_bool(p, "publish")?;
        let description = opt_str(p, "versionDescription")?;
        if description.is_some() && !publish {
            return Err(ApiError::new(
                "ValidationException",
                "Version description can only be set when publish is true",
            ));
        }
        let definition = match p.get("definition") {
            None | Some(Value::Null) => None,
            Some(_) => Some(Self::definition(p, old.kind == "EXPRESS")?),
        };
        let role = opt_str(p, "roleArn")?;
        let logging = match p.get("loggingConfiguration") {
            None | Some(Value::Null) => None,
            Some(l) => Some(Logging::from_request(l)?),
        };
        let tracing = tracing_enabled(p)?;
        if definition.is_none()
            && role.is_none()
            && logging.is_none()
            && tracing.is_none()
            && !publish
        {
            return Err(ApiError::new(
                "MissingRequiredParameter",
                "Either the definition, the role ARN, the LoggingConfiguration, or the TracingConfiguration must be specified",
            ));
        }
        let now = self.runtime.now_ms();
        let mut new = old.clone();
        if let Some(d) = definition {
            new.definition = d;
        }
        if let Some(r) = role {
            new.role_arn = r.to_string();
        }
        if let Some(l) = &logging {
            new.logging = Some(l.to_json().to_string());
        }
        if let Some(t) = tracing {
            new.tracing = t;
        }
        let changed = new.definition != old.definition
            || new.role_arn != old.role_arn
            || Logging::stored(&new) != Logging::stored(&old)
            || new.tracing != old.tracing;
        // A machine's first revision is not shown until an update without publish
        // reveals it; an update that changes nothing keeps the revision it had.
        if changed || (old.revision_id.is_none() && !publish) {
            new.revision_id = Some(shoal_expr::uuid_v4(&self.runtime.entropy()));
        }
        new.updated_ms = Some(now);
        self.db.put_state_machine(&new)?;
        let mut v = json!({"updateDate": secs(now)});
        if let Some(r) = &new.revision_id {
            v["revisionId"] = json!(r);
        }
        if publish {
            let (version, _) = self.publish(arn, description)?;
            v["stateMachineVersionArn"] = json!(version.arn);
        }
        Ok(v)
    }

    /// Publishes the machine's current revision, or returns the latest version when
    /// that already holds it. The bool says whether a new version was made.
    fn publish(&self, arn: &str, description: Option<&str>) -> R<(StateMachineRecord, bool)> {
        let mut m = self.machine_record(arn)?;
        if let Some(latest) = self.db.versions(arn)?.into_iter().next() {
            let same = latest.revision_id == m.revision_id
                && latest.definition == m.definition
                && latest.role_arn == m.role_arn
                && latest.logging == m.logging
                && latest.tracing == m.tracing;
            if same {
                return Ok((latest, false));
            }
        }
        m.last_version += 1;
        let number = m.last_version;
        self.db.put_state_machine(&m)?;
        let version = StateMachineRecord {
            arn: version_arn(arn, number),
            created_ms: self.runtime.now_ms(),
            updated_ms: None,
            description: description.map(str::to_string),
            version: Some(Version {
                of: arn.to_string(),
                number,
            }),
            last_version: 0,
            ..m
        };
        self.db.create_state_machine(&version)?;
        Ok((version, true))
    }

    pub(crate) fn publish_state_machine_version(&self, p: &Value) -> R {
        let arn = req_str(p, "stateMachineArn")?;
        let m = self.machine_record(arn)?;
        if let Some(r) = opt_str(p, "revisionId")? {
            let current = m.revision_id.as_deref().unwrap_or("");
            if r != current {
                return Err(ApiError::new(
                    "ConflictException",
                    format!("Failed to publish the State Machine version for revision {r}. The current State Machine revision is {current}."),
                ));
            }
        }
        let (v, _) = self.publish(arn, opt_str(p, "description")?)?;
        Ok(json!({"stateMachineVersionArn": v.arn, "creationDate": secs(v.created_ms)}))
    }

    pub(crate) fn list_state_machine_versions(&self, p: &Value) -> R {
        let arn = req_str(p, "stateMachineArn")?;
        self.machine_record(arn)?;
        let (items, next) = page(self.db.versions(arn)?, p, 100)?;
        let list: Vec<Value> = items
            .iter()
            .map(|v| json!({"stateMachineVersionArn": v.arn, "creationDate": secs(v.created_ms)}))
            .collect();
        let mut v = json!({ "stateMachineVersions": list });
        if let Some(n) = next {
            v["nextToken"] = json!(n);
        }
        Ok(v)
    }

    pub(crate) fn delete_state_machine_version(&self, p: &Value) -> R {
        let arn = req_str(p, "stateMachineVersionArn")?;
        let MachineArn::Version { machine, .. } = MachineArn::parse(arn)? else {
            return Err(ApiError::new("InvalidArn", format!("Invalid Arn: '{arn}'")));
        };
        let used = self
            .db
            .aliases(&machine)?
            .into_iter()
            .find(|a| a.routing.iter().any(|r| r.version_arn == arn));
        if let Some(a) = used {
            return Err(ApiError::new(
                "ConflictException",
                format!("Version to be deleted must not be referenced by an alias. Current list of aliases referencing this version: [{}]", a.arn),
            ));
        }
        self.db.delete_state_machine(arn)?;
        Ok(json!({}))
    }

    pub(crate) fn describe_state_machine(&self, p: &Value) -> R {
        let arn = req_str(p, "stateMachineArn")?;
        let m = self.machine_record(arn)?;
        let mut v = Map::new();
        v.insert("stateMachineArn".into(), json!(m.arn));
        v.insert("status".into(), json!("ACTIVE"));
        v.insert("type".into(), json!(m.kind));
        v.insert("creationDate".into(), secs(m.created_ms));
        if let Some(d) = &m.description {
            v.insert("description".into(), json!(d));
        }
        config_fields(&m, &m.definition, &mut v);
        Ok(Value::Object(v))
    }

    pub(crate) fn describe_state_machine_for_execution(&self, p: &Value) -> R {
        let e = self.execution(p)?;
        let origin = self.db.execution_origin(&e.arn)?;
        let m = match &origin.version_arn {
            Some(v) => self.db.state_machine(v)?,
            None => self.db.state_machine(&e.state_machine_arn)?,
        };
        let m = m.ok_or_else(|| {
            ApiError::new(
                "StateMachineDoesNotExist",
                format!("State Machine Does Not Exist: '{}'", e.state_machine_arn),
            )
        })?;
        let mut v = Map::new();
        v.insert("stateMachineArn".into(), json!(e.state_machine_arn));
        v.insert(
            "updateDate".into(),
            secs(m.updated_ms.unwrap_or(m.created_ms)),
        );
        config_fields(&m, &e.definition, &mut v);
        Ok(Value::Object(v))
    }

    pub(crate) fn list_state_machines(&self, p: &Value) -> R {
        let all = self.db.state_machines()?;
        let (items, next) = page(all, p, 100)?;
        let list: Vec<Value> = items
            .iter()
            .map(|m| json!({"stateMachineArn": m.arn, "name": m.name, "type": m.kind, "creationDate": secs(m.created_ms)}))
            .collect();
        let mut v = json!({ "stateMachines": list });
        if let Some(n) = next {
            v["nextToken"] = json!(n);
        }
        Ok(v)
    }

    pub(crate) fn delete_state_machine(&self, p: &Value) -> R {
        let arn = req_str(p, "stateMachineArn")?;
        match MachineArn::parse(arn)? {
            MachineArn::Machine(_) => {
                // Its versions, aliases and tags go with it.
                for a in self.db.aliases(arn)? {
                    self.db.delete_alias(&a.arn)?;
                }
                for v in self.db.versions(arn)? {
                    self.db.delete_state_machine(&v.arn)?;
                }
                let keys: Vec<String> = self.db.tags(arn)?.into_iter().map(|(k, _)| k).collect();
                self.db.untag(arn, &keys)?;
                self.db.delete_state_machine(arn)?;
            }
            MachineArn::Version { .. } => {
                return self.delete_state_machine_version(&json!({"stateMachineVersionArn": arn}))
            }
            MachineArn::Alias { .. } => {
                return Err(ApiError::new("InvalidArn", format!("Invalid Arn: '{arn}'")))
            }
        }
        Ok(json!({}))
    }

    // Aliases.

    fn alias_record(&self, arn: &str) -> R<AliasRecord> {
        self.db.alias(arn)?.ok_or_else(|| {
            ApiError::new("ResourceNotFound", format!("Resource not found: '{arn}'"))
        })
    }

    /// `routingConfiguration`: one or two versions of one machine, weights adding to 100.
    fn routing(&self, p: &Value) -> R<(String, Vec<Route>)> {
        let Some(list) = p.get("routingConfiguration").and_then(Value::as_array) else {
            return Err(validation(
                "routingConfiguration",
                "Member must not be null",
            ));
        };
        if list.is_empty() || list.len() > 2 {
            return Err(validation(
                "routingConfiguration",
                "Member must have length less than or equal to 2",
            ));
        }
        let mut machine = None::<String>;
        let mut routes = Vec::new();
        for r in list {
            let arn = req_str(r, "stateMachineVersionArn")?;
            let weight = r.get("weight").and_then(Value::as_u64).ok_or_else(|| {
                validation("routingConfiguration.weight", "Member must not be null")
            })?;
            let MachineArn::Version { machine: m, .. } = MachineArn::parse(arn)? else {
                return Err(ApiError::new("InvalidArn", format!("Invalid Arn: '{arn}'")));
            };
            self.machine_record(arn)?;
            if machine.as_ref().is_some_and(|x| *x != m) {
                return Err(ApiError::new(
                    "ValidationException",
                    "Routing configuration must contain state machine version ARNs of the same state machine",
                ));
            }
            machine = Some(m);
            routes.push(Route {
                version_arn: arn.to_string(),
                weight: weight as u32,
            });
        }
        if routes.iter().map(|r| r.weight).sum::<u32>() != 100 {
            return Err(ApiError::new(
                "ValidationException",
                "Sum of routing configuration weights must be equal to 100",
            ));
        }
        Ok((machine.unwrap_or_default(), routes))
    }

    pub(crate) fn create_state_machine_alias(&self, p: &Value) -> R {
        let name = req_str(p, "name")?;
        check_name(name)?;
        if name.parse::<u32>().is_ok() {
            return Err(ApiError::new(
                "ValidationException",
                format!("Invalid alias name: '{name}'"),
            ));
        }
        let (machine, routing) = self.routing(p)?;
        let arn = format!("{machine}:{name}");
        let description = opt_str(p, "description")?.map(str::to_string);
        if let Some(old) = self.db.alias(&arn)? {
            if old.routing == routing && old.description == description {
                return Ok(
                    json!({"stateMachineAliasArn": arn, "creationDate": secs(old.created_ms)}),
                );
            }
            return Err(ApiError::new(
                "ConflictException",
                format!("Failed to create alias because an alias with the same name and a different routing configuration already exists: '{arn}'"),
            ));
        }
        let now = self.runtime.now_ms();
        self.db.put_alias(&AliasRecord {
            arn: arn.clone(),
            machine,
            name: name.to_string(),
            description,
            routing,
            created_ms: now,
            updated_ms: now,
        })?;
        Ok(json!({"stateMachineAliasArn": arn, "creationDate": secs(now)}))
    }

    pub(crate) fn describe_state_machine_alias(&self, p: &Value) -> R {
        let a = self.alias_record(req_str(p, "stateMachineAliasArn")?)?;
        let mut v = json!({
            "stateMachineAliasArn": a.arn, "name": a.name,
            "routingConfiguration": a.routing.iter().map(|r| json!({"stateMachineVersionArn": r.version_arn, "weight": r.weight})).collect::<Vec<_>>(),
            "creationDate": secs(a.created_ms), "updateDate": secs(a.updated_ms),
        });
        if let Some(d) = &a.description {
            v["description"] = json!(d);
        }
        Ok(v)
    }

    pub(crate) fn update_state_machine_alias(&self, p: &Value) -> R {
        let arn = req_str(p, "stateMachineAliasArn")?;
        let mut a = self.alias_record(arn)?;
        let description = opt_str(p, "description")?;
        let has_routing = p.get("routingConfiguration").is_some_and(|r| !r.is_null());
        if description.is_none() && !has_routing {
            return Err(ApiError::new(
                "ValidationException",
                "Either the description or the RoutingConfiguration must be specified",
            ));
        }
        if has_routing {
            let (machine, routing) = self.routing(p)?;
            if machine != a.machine {
                return Err(ApiError::new(
                    "ValidationException",
                    "Routing configuration must contain state machine version ARNs of the alias's state machine",
                ));
            }
            a.routing = routing;
        }
        if let Some(d) = description {
            a.description = Some(d.to_string());
        }
        a.updated_ms = self.runtime.now_ms();
        self.db.put_alias(&a)?;
        Ok(json!({"updateDate": secs(a.updated_ms)}))
    }

    pub(crate) fn delete_state_machine_alias(&self, p: &Value) -> R {
        let arn = req_str(p, "stateMachineAliasArn")?;
        if !matches!(MachineArn::parse(arn)?, MachineArn::Alias { .. }) {
            return Err(ApiError::new("InvalidArn", format!("Invalid Arn: '{arn}'")));
        }
        self.db.delete_alias(arn)?;
        Ok(json!({}))
    }

    pub(crate) fn list_state_machine_aliases(&self, p: &Value) -> R {
        let arn = req_str(p, "stateMachineArn")?;
        self.machine_record(arn)?;
        let (items, next) = page(self.db.aliases(arn)?, p, 100)?;
        let list: Vec<Value> = items
            .iter()
            .map(|a| json!({"stateMachineAliasArn": a.arn, "creationDate": secs(a.created_ms)}))
            .collect();
        let mut v = json!({ "stateMachineAliases": list });
        if let Some(n) = next {
            v["nextToken"] = json!(n);
        }
        Ok(v)
    }

    // Tags.

    /// A taggable resource that exists: a state machine or an activity.
    fn taggable(&self, p: &Value) -> R<String> {
        let arn = req_str(p, "resourceArn")?;
        let parts: Vec<&str> = arn.split(':').collect();
        let exists = match parts.get(5) {
            Some(&"stateMachine") => self.db.state_machine(arn)?.is_some(),
            Some(&"activity") => self.db.activity(arn)?.is_some(),
            _ => false,
        };
        if !exists {
            return Err(ApiError::new(
                "ResourceNotFound",
                format!("Resource not found: '{arn}'"),
            ));
        }
        Ok(arn.to_string())
    }

    pub(crate) fn tag_resource(&self, p: &Value) -> R {
        let arn = self.taggable(p)?;
        let tags = tags_of(p, "tags")?;
        if p.get("tags").is_none_or(Value::is_null) {
            return Err(validation("tags", "Member must not be null"));
        }
        self.db.tag(&arn, &tags)?;
        Ok(json!({}))
    }

    pub(crate) fn untag_resource(&self, p: &Value) -> R {
        let arn = self.taggable(p)?;
        let keys = match p.get("tagKeys") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|k| {
                    k.as_str().map(str::to_string).ok_or_else(|| {
                        ApiError::new("SerializationException", "tagKeys must be strings")
                    })
                })
                .collect::<R<Vec<_>>>()?,
            _ => return Err(validation("tagKeys", "Member must not be null")),
        };
        self.db.untag(&arn, &keys)?;
        Ok(json!({}))
    }

    pub(crate) fn list_tags_for_resource(&self, p: &Value) -> R {
        let arn = self.taggable(p)?;
        let tags: Vec<Value> = self
            .db
            .tags(&arn)?
            .into_iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        Ok(json!({ "tags": tags }))
    }
}

/// A request's tag list (`[{"key", "value"}]`), checked as AWS does.
pub(crate) fn tags_of(p: &Value, field: &str) -> R<Vec<(String, String)>> {
    let list = match p.get(field) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(ApiError::new(
                "SerializationException",
                format!("{field} must be a list"),
            ))
        }
    };
    list.iter()
        .map(|t| {
            let key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let value = t.get("value").and_then(Value::as_str);
            if key.is_empty() || key.chars().count() > 128 {
                return Err(validation(
                    &format!("{field}.member.key"),
                    "Member must have length greater than or equal to 1",
                ));
            }
            let Some(value) = value else {
                return Err(validation(
                    &format!("{field}.member.value"),
                    "Member must not be null",
                ));
            };
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}
