//! Property test of the request handling: random methods, paths, targets, headers and
//! bodies (random bytes, and JSON with random fields for every operation) always get a
//! 2xx or 4xx answer with a JSON or HTML body, never a 5xx or a panic.

use proptest::prelude::*;
use serde_json::{json, Value};
use shoal_server::{Options, Server};
use std::sync::Arc;

const OPS: &[&str] = &[
    "CreateStateMachine",
    "UpdateStateMachine",
    "DescribeStateMachine",
    "ListStateMachines",
    "DeleteStateMachine",
    "StartExecution",
    "StartSyncExecution",
    "StopExecution",
    "DescribeExecution",
    "ListExecutions",
    "GetExecutionHistory",
    "DescribeMapRun",
    "ListMapRuns",
    "UpdateMapRun",
    "RedriveExecution",
    "ValidateStateMachineDefinition",
    "TestState",
    "ListMapRunFailures",
    "NoSuchOp",
];

const FIELDS: &[&str] = &[
    "name",
    "definition",
    "roleArn",
    "type",
    "stateMachineArn",
    "executionArn",
    "mapRunArn",
    "input",
    "maxResults",
    "nextToken",
    "reverseOrder",
    "statusFilter",
    "maxConcurrency",
    "toleratedFailurePercentage",
    "toleratedFailureCount",
    "error",
    "cause",
    "definitionSubstitutions",
    "includeExecutionData",
];

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "arn:aws:states:us-east-1:123456789012:stateMachine:sm",
            "arn:aws:states:us-east-1:123456789012:execution:sm:e",
            "arn:aws:states:us-east-1:123456789012:mapRun:sm/Map:x",
            "{\"StartAt\":\"P\",\"States\":{\"P\":{\"Type\":\"Pass\",\"End\":true}}}",
            "{\"Type\":\"Pass\",\"End\":true}",
            "{}",
            "-1",
            "99999999999999999999",
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn request_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::btree_map(prop::sample::select(FIELDS), value(), 0..6).prop_map(|m| {
            let o: serde_json::Map<String, Value> =
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            Value::Object(o).to_string().into_bytes()
        }),
    ]
}

fn server() -> (Arc<Server>, tempfile::TempDir, tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = shoal_store::Db::open(dir.path()).unwrap();
    let server = rt.block_on(async {
        let runtime = shoal_runtime::Runtime::new(shoal_runtime::Options {
            buckets: None,
            tasks: shoal_tasks::Tasks::new(Default::default()),
            seed: 3,
            db: Some(db.clone()),
            fleet: None,
        });
        Server::new(Options {
            fleet: None,
            runtime,
            db,
            token: None,
            mocks: None,
        })
    });
    // One machine and execution exist, so lookups sometimes find something.
    rt.block_on(async {
        let h = |op: &str| vec![("x-amz-target".to_string(), format!("AWSStepFunctions.{op}"))];
        let def = json!({"name": "sm", "definition": "{\"StartAt\":\"P\",\"States\":{\"P\":{\"Type\":\"Pass\",\"End\":true}}}", "roleArn": "r"});
        server.handle("POST", "/", &h("CreateStateMachine"), def.to_string().as_bytes()).await;
        let start = json!({"stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:sm", "name": "e"});
        server.handle("POST", "/", &h("StartExecution"), start.to_string().as_bytes()).await;
    });
    (server, dir, rt)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_request_gets_2xx_or_4xx(
        method in prop::sample::select(vec!["POST", "GET", "PUT", "DELETE", "HEAD", "PATCH"]),
        path in prop::sample::select(vec!["/", "/index.html", "/x", "/?a=b", "//", ""]),
        op in prop::sample::select(OPS),
        prefix in prop::sample::select(vec!["AWSStepFunctions.", "Shoal.", "", "AWSStepFunctions"]),
        extra in prop::collection::vec(("[a-zA-Z-]{1,12}", "\\PC{0,30}"), 0..3),
        body in request_body(),
    ) {
        let (server, _dir, rt) = server();
        let mut headers = vec![("x-amz-target".to_string(), format!("{prefix}{op}"))];
        headers.extend(extra.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)));
        let reply = rt.block_on(server.handle(method, path, &headers, &body));
        prop_assert!((200..500).contains(&reply.status), "{} {method} {path} {op}: {}", reply.status, String::from_utf8_lossy(&reply.body));
        prop_assert!(reply.headers.iter().any(|(k, v)| *k == "x-amzn-requestid" && !v.is_empty()), "no request id");
        if reply.status >= 400 {
            let v: Value = serde_json::from_slice(&reply.body).expect("errors are JSON");
            prop_assert!(v["__type"].is_string() && v["message"].is_string(), "{v}");
        }
    }
}
