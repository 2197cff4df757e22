//! The typed model of an Amazon States Language definition, and its parser/validator.
//!
//! Architecture invariant: parsing never stops at the first problem. [`parse`] returns
//! the model it could build together with **every** diagnostic, each with a JSON pointer.

mod express;
pub mod identity;
mod parse;
mod references;
mod resource;
mod status;

use indexmap::IndexMap;
use serde_json::Value;
use shoal_expr::choice::Rule;
use shoal_expr::jsonata::Expr;
use shoal_expr::template::{Lang, Template};
use shoal_expr::Path;
use std::sync::Arc;

pub use express::express_diagnostics;
pub use parse::{parse, parse_value, substitute, Parsed};
pub use references::variable_references;
pub use resource::{Pattern, Resource};
pub use status::{ExecutionStatus, UnknownStatus};

/// One problem found in a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// A JSON pointer into the definition (`""` is the whole document).
    pub pointer: String,
    /// AWS's ValidateStateMachineDefinition code, e.g. `SCHEMA_VALIDATION_FAILED`.
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{p}: {}", self.message)
    }
}

/// A state machine, or a Parallel branch, or a Map's item processor.
#[derive(Debug, Clone)]
pub struct StateMachine {
    pub comment: Option<String>,
    pub start_at: String,
    pub states: IndexMap<String, State>,
    pub timeout_seconds: Option<u64>,
    pub query_language: Lang,
}

impl StateMachine {
    /// Whether any state here, or in a branch or inline processor, reads the context
    /// object (`$$`, or `$states.context` in JSONata). Distributed processors are
    /// executions of their own and do not count.
    pub fn reads_context(&self) -> bool {
        self.states.values().any(|st| {
            st.uses_context
                || match &st.kind {
                    Kind::Parallel { branches, .. } => branches.iter().any(|b| b.reads_context()),
                    Kind::Map(m) => {
                        matches!(m.mode, MapMode::Inline) && m.processor.reads_context()
                    }
                    _ => false,
                }
        })
    }
}

#[derive(Debug, Clone)]
pub struct State {
    pub name: String,
    pub lang: Lang,
    pub transition: Transition,
    pub input_path: DataPath,
    pub output_path: DataPath,
    pub assign: Option<Template>,
    /// JSONata `Output`.
    pub output: Option<Template>,
    pub kind: Kind,
    /// False when no expression of the state can read the context object.
    pub uses_context: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Next(String),
    End,
    /// Choice, Succeed and Fail decide for themselves.
    None,
}

/// InputPath/OutputPath: absent means `$`; `null` means `{}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum DataPath {
    #[default]
    Whole,
    Null,
    Path(Path),
}

/// ResultPath: absent means `$`; `null` discards the result.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ResultPath {
    #[default]
    Replace,
    Discard,
    Path(Path),
}

/// A number given literally, by a reference path, or by a JSONata expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Num {
    Lit(f64),
    Path(Path),
    Expr(Expr),
}

/// A string given literally, by a path or intrinsic, or by JSONata.
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    Lit(String),
    Dynamic(Template),
}

#[derive(Debug, Clone)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: f64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<f64>,
    pub jitter_full: bool,
}

#[derive(Debug, Clone)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    pub result_path: ResultPath,
    pub assign: Option<Template>,
    pub output: Option<Template>,
}

/// How a Task, Parallel or Map state handles its result and its failures:
/// ResultSelector, ResultPath, Retry and Catch.
#[derive(Debug, Clone, Default)]
pub struct ResultHandling {
    pub result_selector: Option<Template>,
    pub result_path: ResultPath,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

#[derive(Debug, Clone)]
pub struct ChoiceBranch {
    pub rule: ChoiceCond,
    pub next: String,
    pub assign: Option<Template>,
    pub output: Option<Template>,
}

#[derive(Debug, Clone)]
pub enum ChoiceCond {
    Rule(Rule),
    Condition(Template),
}

#[derive(Debug, Clone)]
pub enum WaitFor {
    Seconds(Num),
    Timestamp(Text),
    SecondsPath(Path),
    TimestampPath(Path),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMode {
    Inline,
    Distributed { express: bool },
}

#[derive(Debug, Clone)]
pub struct MapState {
    pub processor: Arc<StateMachine>,
    /// A distributed processor as a definition of its own (QueryLanguage made explicit),
    /// for workers that parse it on another machine.
    pub processor_source: Option<Arc<Value>>,
    pub mode: MapMode,
    pub items_path: Option<Path>,
    pub items: Option<Template>,
    /// ItemSelector, or the legacy Parameters.
    pub item_selector: Option<Template>,
    pub max_concurrency: Option<Num>,
    pub tolerated_failure_count: Option<Num>,
    pub tolerated_failure_percentage: Option<Num>,
    pub item_reader: Option<ItemReader>,
    pub item_batcher: Option<ItemBatcher>,
    pub result_writer: Option<ResultWriter>,
    pub label: Option<String>,
    pub handling: ResultHandling,
}

#[derive(Debug, Clone)]
pub struct ItemReader {
    pub resource: ReaderResource,
    pub parameters: Template,
    pub config: Arc<ReaderConfig>,
    /// MaxItems or MaxItemsPath (or its JSONata form), evaluated when the Map starts.
    pub max_items: Option<Num>,
}

/// The two ItemReader resources AWS has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderResource {
    /// `arn:aws:states:::s3:listObjectsV2`: a listing, or with LOAD_AND_FLATTEN the
    /// contents of each listed object.
    ListObjectsV2,
    /// `arn:aws:states:::s3:getObject`: one object's contents, or a manifest.
    GetObject,
}

/// ReaderConfig, checked when the definition loads. MaxItems is not here: it may
/// come from the input, so it lives on [`ItemReader::max_items`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReaderConfig {
    pub input_type: Option<InputType>,
    pub transformation: ReaderTransformation,
    pub manifest_type: Option<ManifestType>,
    pub csv_delimiter: CsvDelimiter,
    pub csv_headers: CsvHeaders,
    /// A JSON Pointer to the array (or object) inside a JSON file.
    pub items_pointer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    Csv,
    Json,
    Jsonl,
    Parquet,
    Manifest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReaderTransformation {
    /// Iterate the listing's metadata.
    #[default]
    None,
    /// Read each listed object and iterate its contents.
    LoadAndFlatten,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestType {
    AthenaData,
    S3Inventory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CsvDelimiter {
    #[default]
    Comma,
    Pipe,
    Semicolon,
    Space,
    Tab,
}

impl CsvDelimiter {
    pub fn char(self) -> char {
        match self {
            CsvDelimiter::Comma => ',',
            CsvDelimiter::Pipe => '|',
            CsvDelimiter::Semicolon => ';',
            CsvDelimiter::Space => ' ',
            CsvDelimiter::Tab => '\t',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CsvHeaders {
    /// `CSVHeaderLocation: FIRST_ROW`, the default.
    #[default]
    FirstRow,
    /// `CSVHeaderLocation: GIVEN` with its `CSVHeaders`.
    Given(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct ItemBatcher {
    pub max_items_per_batch: Option<Num>,
    pub max_input_bytes_per_batch: Option<Num>,
    pub batch_input: Option<Template>,
}

#[derive(Debug, Clone)]
pub struct ResultWriter {
    /// `arn:aws:states:::s3:putObject`; without it the WriterConfig only shapes the
    /// map's output.
    pub resource: Option<String>,
    pub parameters: Option<Template>,
    pub config: WriterConfig,
}

/// WriterConfig: how the ResultWriter writes each child's result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterConfig {
    pub output_type: OutputType,
    pub transformation: WriterTransformation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputType {
    /// One JSON array per file.
    #[default]
    Json,
    /// One JSON value per line.
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriterTransformation {
    /// Each child's metadata, input and output.
    #[default]
    None,
    /// Outputs only.
    Compact,
    /// Outputs only, arrays concatenated.
    Flatten,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Pass {
        result: Option<Value>,
        parameters: Option<Template>,
        result_path: ResultPath,
    },
    Task {
        resource: Arc<Resource>,
        parameters: Option<Template>,
        timeout: Option<Num>,
        heartbeat: Option<Num>,
        handling: ResultHandling,
    },
    Choice {
        choices: Vec<ChoiceBranch>,
        default: Option<String>,
    },
    Wait {
        wait: WaitFor,
    },
    Succeed,
    Fail {
        error: Option<Text>,
        cause: Option<Text>,
    },
    Parallel {
        branches: Vec<Arc<StateMachine>>,
        parameters: Option<Template>,
        handling: ResultHandling,
    },
    Map(Box<MapState>),
}

impl Kind {
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Pass { .. } => "Pass",
            Kind::Task { .. } => "Task",
            Kind::Choice { .. } => "Choice",
            Kind::Wait { .. } => "Wait",
            Kind::Succeed => "Succeed",
            Kind::Fail { .. } => "Fail",
            Kind::Parallel { .. } => "Parallel",
            Kind::Map(_) => "Map",
        }
    }

    pub fn handling(&self) -> Option<&ResultHandling> {
        match self {
            Kind::Task { handling, .. } | Kind::Parallel { handling, .. } => Some(handling),
            Kind::Map(m) => Some(&m.handling),
            _ => None,
        }
    }
}

/// Does a retrier or catcher's ErrorEquals match this error? Nothing matches the
/// terminal `States.Runtime`; `States.ALL` matches everything else. `States.TaskFailed` is a wildcard too,
/// for everything but `States.Runtime`, `States.Timeout` and `States.DataLimitExceeded`.
pub fn error_matches(error_equals: &[String], error: &str) -> bool {
    use shoal_expr::errors::{ALL, DATA_LIMIT_EXCEEDED, RUNTIME, TASK_FAILED, TIMEOUT};
    // AWS's documentation calls DataLimitExceeded terminal too, but its recorded runs
    // show `States.ALL` catching it (lambda-cases/error_handling/*data_limit_exceeded*).
    // States.Runtime is terminal: not even a retrier or catcher that names it matches.
    if error == RUNTIME {
        return false;
    }
    let task_failed = error != TIMEOUT && error != DATA_LIMIT_EXCEEDED;
    error_equals
        .iter()
        .any(|e| e == error || e == ALL || (e == TASK_FAILED && task_failed))
}
