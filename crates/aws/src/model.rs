//! The AWS API models: botocore's `service-2.json` files, cut down by
//! `scripts/gen_aws_models.py` to what a call needs and embedded gzipped. A service's
//! model is parsed on first use; the rest of the table stays raw text.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};

static MODELS_GZ: &[u8] = include_bytes!("../data/models.json.gz");

/// How a service puts a call on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    #[serde(rename = "json")]
    Json,
    #[serde(rename = "rest-json")]
    RestJson,
    #[serde(rename = "rest-xml")]
    RestXml,
    #[serde(rename = "query")]
    Query,
    #[serde(rename = "ec2")]
    Ec2,
    /// Smithy RPCv2 CBOR, which a few services speak and shoal does not.
    #[serde(other)]
    Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// botocore's `serviceId`, e.g. `DynamoDB`, `Secrets Manager`.
    pub id: String,
    /// The AWS SDK for Java v2 client name (`DynamoDb`, `Sfn`), which Step Functions
    /// puts in front of an aws-sdk error's name.
    pub prefix: String,
    pub protocol: Protocol,
    pub json_version: Option<String>,
    pub target_prefix: Option<String>,
    pub api_version: Option<String>,
    pub xml_namespace: Option<String>,
    pub endpoint_prefix: String,
    pub signing_name: String,
    #[serde(default)]
    pub query_compatible: bool,
    pub global: Option<Global>,
    pub ops: HashMap<String, Operation>,
    pub shapes: HashMap<String, Shape>,
}

/// A service with one endpoint for the partition (IAM, Route 53, ...).
#[derive(Debug, Deserialize)]
pub struct Global {
    pub host: String,
    pub region: String,
}

#[derive(Debug, Deserialize)]
pub struct Operation {
    #[serde(default = "post")]
    pub method: String,
    #[serde(default = "root")]
    pub uri: String,
    pub input: Option<String>,
    pub output: Option<String>,
    /// The query protocol's result element, e.g. `PublishResult`.
    pub wrapper: Option<String>,
    #[serde(default)]
    pub errors: Vec<String>,
    /// REST-XML: the request body's root element, when the whole input is the payload.
    #[serde(rename = "inputLocationName")]
    pub input_location_name: Option<String>,
    #[serde(rename = "inputXmlNamespace")]
    pub input_xml_namespace: Option<XmlNamespace>,
    /// A prefix some operations put on the endpoint's host (`{Bucket}.`, `data.`).
    #[serde(rename = "hostPrefix")]
    pub host_prefix: Option<String>,
}

fn post() -> String {
    "POST".into()
}
fn root() -> String {
    "/".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct XmlNamespace {
    pub uri: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShapeType {
    Structure,
    List,
    Map,
    String,
    Integer,
    Long,
    Short,
    Byte,
    Float,
    Double,
    Boolean,
    Timestamp,
    Blob,
    BigInteger,
    BigDecimal,
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shape {
    #[serde(rename = "type")]
    pub kind: ShapeType,
    /// Members in the model's order (which the XML protocols keep).
    #[serde(default)]
    pub members: indexmap::IndexMap<String, Member>,
    pub member: Option<Member>,
    pub key: Option<Member>,
    pub value: Option<Member>,
    pub payload: Option<String>,
    pub location_name: Option<String>,
    #[serde(default)]
    pub flattened: bool,
    pub timestamp_format: Option<String>,
    pub error: Option<ErrorInfo>,
    #[serde(default)]
    pub exception: bool,
    #[serde(default)]
    pub streaming: bool,
    #[serde(default)]
    pub document: bool,
    pub xml_namespace: Option<XmlNamespace>,
    /// A structure's members that must be present.
    #[serde(default)]
    pub required: Vec<String>,
    /// Length (strings, blobs, lists, maps) or value (numbers) bounds; the models
    /// table keeps them only on shapes an operation's output reaches.
    pub min: Option<f64>,
    pub max: Option<f64>,
    #[serde(rename = "enum")]
    pub enum_values: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    pub code: Option<String>,
    pub http_status_code: Option<u16>,
}

/// Where a member travels in a REST call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Location {
    Uri,
    Querystring,
    Header,
    Headers,
    StatusCode,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub shape: String,
    pub location: Option<Location>,
    pub location_name: Option<String>,
    #[serde(default)]
    pub flattened: bool,
    #[serde(default)]
    pub xml_attribute: bool,
    pub xml_namespace: Option<XmlNamespace>,
    pub query_name: Option<String>,
    pub timestamp_format: Option<String>,
    #[serde(default)]
    pub jsonvalue: bool,
    #[serde(default)]
    pub idempotency_token: bool,
    #[serde(default)]
    pub host_label: bool,
}

impl Service {
    pub fn shape(&self, name: &str) -> Option<&Shape> {
        self.shapes.get(name)
    }

    /// The operation an ARN's camelCase action names (`putItem` → `PutItem`).
    pub fn operation(&self, action: &str) -> Option<(&str, &Operation)> {
        if let Some((k, v)) = self.ops.get_key_value(&upper_first(action)) {
            return Some((k.as_str(), v));
        }
        self.ops
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(action))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The modeled error shape for a wire error code, if there is one.
    pub fn error_shape(&self, code: &str) -> Option<&str> {
        self.shapes
            .iter()
            .find(|(name, s)| {
                s.exception
                    && (s.error.as_ref().and_then(|e| e.code.as_deref()) == Some(code)
                        || name.as_str() == code)
            })
            .map(|(name, _)| name.as_str())
    }
}

pub fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The models table: the botocore version, and every service's model as raw text.
struct Table {
    botocore: String,
    raw: HashMap<String, Box<RawValue>>,
    parsed: Mutex<HashMap<String, Arc<Service>>>,
}

#[derive(Deserialize)]
struct RawTable {
    botocore: String,
    services: HashMap<String, Box<RawValue>>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut text = String::new();
        flate2::read::GzDecoder::new(MODELS_GZ)
            .read_to_string(&mut text)
            .expect("the embedded models table is gzipped UTF-8");
        let t: RawTable =
            serde_json::from_str(&text).expect("the embedded models table is valid JSON");
        Table {
            botocore: t.botocore,
            raw: t.services,
            parsed: Mutex::new(HashMap::new()),
        }
    })
}

/// The botocore version the models come from.
pub fn botocore_version() -> &'static str {
    &table().botocore
}

/// A service by the name Step Functions uses in `aws-sdk:<service>:<action>`.
pub fn service(key: &str) -> Option<Arc<Service>> {
    let t = table();
    let mut parsed = t.parsed.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = parsed.get(key) {
        return Some(s.clone());
    }
    let raw = t.raw.get(key)?;
    let s: Service = serde_json::from_str(raw.get()).expect("an embedded model is valid");
    let s = Arc::new(s);
    parsed.insert(key.to_string(), s.clone());
    Some(s)
}

/// Every service key in the table.
pub fn service_keys() -> impl Iterator<Item = &'static str> {
    table().raw.keys().map(String::as_str)
}
