//! EXPRESS machines refuse the integration patterns that wait, with AWS's recorded
//! messages (api-cases/express/test_illegal_callbacks_*), at creation and validation;
//! the same definition makes a STANDARD machine. The store is the in-memory one.

use serde_json::{json, Value};
use shoal_server::{Options, Server};
use std::sync::Arc;

fn call(rt: &tokio::runtime::Runtime, server: &Arc<Server>, op: &str, body: Value) -> (u16, Value) {
    let h = vec![("x-amz-target".to_string(), format!("AWSStepFunctions.{op}"))];
    let reply = rt.block_on(server.handle("POST", "/", &h, body.to_string().as_bytes()));
    (reply.status, serde_json::from_slice(&reply.body).unwrap())
}

#[test]
fn express_machines_refuse_sync_and_callbacks() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db: Arc<dyn shoal_store::Store> = Arc::new(shoal_store::Memory::new());
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
    let def = json!({"StartAt": "StartExecution", "States": {"StartExecution": {
        "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync",
        "Parameters": {"StateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:child"},
        "End": true}}})
    .to_string();
    let create =
        |name: &str, ty: &str| json!({"name": name, "definition": def, "roleArn": "r", "type": ty});
    let (status, v) = call(&rt, &server, "CreateStateMachine", create("e", "EXPRESS"));
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["__type"], "InvalidDefinition");
    assert_eq!(
        v["message"],
        "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: Express state machine does not support '.sync' service integration at /States/StartExecution/Resource'"
    );
    let (status, v) = call(&rt, &server, "CreateStateMachine", create("s", "STANDARD"));
    assert_eq!(status, 200, "{v}");
    let (_, v) = call(
        &rt,
        &server,
        "ValidateStateMachineDefinition",
        json!({"definition": def, "type": "EXPRESS"}),
    );
    assert_eq!(v["result"], "FAIL", "{v}");
    assert_eq!(
        v["diagnostics"][0]["location"],
        "/States/StartExecution/Resource"
    );
    let (_, v) = call(
        &rt,
        &server,
        "ValidateStateMachineDefinition",
        json!({"definition": def}),
    );
    assert_eq!(v["result"], "OK", "{v}");
}
