//! Step Functions Local's MockConfigFile through `shoal serve`, driven by boto3
//! (`mocks_client.py`): the example file of AWS's documentation, a happy path, retry
//! paths, a path past the mock's last response, a Map whose iterations take successive
//! responses, and a hybrid case whose SQS state is real (moto server).

mod common;

use common::{free_port, serve, venv_python, wait_for_port, Kill};
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn mock_config_file_test_cases_through_boto3() {
    let python = venv_python(
        "boto3, moto.server",
        "scripts/test.sh makes target/lambda-venv with boto3 and moto[server]",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("buckets")).unwrap();
    let mock_file = dir.path().join("MockConfigFile.json");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mocks/MockConfigFile.json"),
        &mock_file,
    )
    .unwrap();
    let port = free_port();
    let _moto = Kill(
        Command::new(Path::new(&python).with_file_name("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts"),
    );
    wait_for_port(port, "moto server").unwrap();
    let moto = format!("http://127.0.0.1:{port}");
    std::fs::write(
        dir.path().join("shoal.toml"),
        format!("[services.sqs]\nendpoint = {moto:?}\n"),
    )
    .unwrap();
    let s = serve(
        dir.path(),
        &[
            "--config",
            "shoal.toml",
            "--mock-config",
            mock_file.to_str().unwrap(),
        ],
    );
    let o = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mocks_client.py"))
        .args([&s.url(), &moto, mock_file.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("all checks passed"),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `shoal run --test-case` runs a test case of the file, in-process; a file with
/// problems is refused with each problem at its JSON pointer.
#[test]
fn shoal_run_takes_a_test_case() {
    let dir = tempfile::tempdir().unwrap();
    let def = serde_json::json!({"StartAt": "LambdaState", "States": {
        "LambdaState": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "HelloWorldFunction", "Payload.$": "$"},
            "OutputPath": "$.Payload", "End": true}}});
    std::fs::write(
        dir.path().join("LambdaSQSIntegration.asl.json"),
        def.to_string(),
    )
    .unwrap();
    let mocks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mocks/MockConfigFile.json");
    let run = |file: &Path, case: &str| {
        Command::new(env!("CARGO_BIN_EXE_shoal"))
            .current_dir(dir.path())
            .args(["run", "LambdaSQSIntegration.asl.json", "--ephemeral"])
            .args(["--mock-config", file.to_str().unwrap(), "--test-case", case])
            .output()
            .unwrap()
    };
    let o = run(&mocks, "HappyPath");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        r#"{"StatusCode":200,"body":"Hello from Lambda!"}"#
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"StateMachines": {}, "MockedResponses": {"R": {"0": {"Return": 1, "Throw": {"Error": "E"}}}}}"#,
    )
    .unwrap();
    let o = run(&bad, "HappyPath");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("/MockedResponses/R/0"), "{err}");
}
