//! Each wire protocol against a real backend, moto server on a free port of 127.0.0.1:
//! one success and one typed error for JSON (DynamoDB), REST-JSON (Lambda), REST-XML
//! (S3), query (SNS, IAM) and EC2. Then a request to a local stub, to see the host,
//! headers and body that go to AWS itself.

use serde_json::{json, Value};
use shoal_aws::{CallError, Client, Endpoints};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// `target/lambda-venv`, made by scripts/test.sh, next to this test's binary.
fn venv_bin(name: &str) -> PathBuf {
    if let Ok(p) = std::env::var("SHOAL_TEST_PYTHON") {
        return PathBuf::from(p).with_file_name(name);
    }
    let exe = std::env::current_exe().unwrap();
    // target/release/deps/protocols-xxxx → target/lambda-venv/bin
    exe.parent()
        .and_then(|d| d.parent())
        .and_then(|d| d.parent())
        .unwrap()
        .join("lambda-venv/bin")
        .join(name)
}

struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = venv_bin("moto_server");
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}): scripts/test.sh installs moto[server] in target/lambda-venv",
                bin.display()
            )
        });
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

fn client(url: &str) -> Client {
    let endpoints: Endpoints = ["dynamodb", "lambda", "s3", "sns", "iam", "ec2", "sqs"]
        .iter()
        .map(|k| (k.to_string(), url.to_string()))
        .collect();
    Client::new(endpoints)
}

fn service_error(r: Result<shoal_aws::Response, CallError>) -> shoal_aws::ServiceError {
    match r {
        Err(CallError::Service(e)) => *e,
        other => panic!("expected a service error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_family_succeeds_and_fails_typed() {
    let m = moto();
    let c = client(&m.url);

    // JSON 1.0: DynamoDB.
    c.call(
        "dynamodb",
        "createTable",
        &json!({
            "TableName": "t",
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST"
        }),
        None,
    )
    .await
    .unwrap();
    c.call(
        "dynamodb",
        "putItem",
        &json!({"TableName": "t", "Item": {"id": {"S": "1"}, "n": {"N": "5"}}}),
        None,
    )
    .await
    .unwrap();
    let got = c
        .call(
            "dynamodb",
            "getItem",
            &json!({"TableName": "t", "Key": {"id": {"S": "1"}}}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        got.output,
        json!({"Item": {"id": {"S": "1"}, "n": {"N": "5"}}})
    );
    let e = service_error(
        c.call(
            "dynamodb",
            "getItem",
            &json!({"TableName": "nope", "Key": {"id": {"S": "1"}}}),
            None,
        )
        .await,
    );
    assert_eq!(e.code, "ResourceNotFoundException");
    assert_eq!(e.shape.as_deref(), Some("ResourceNotFoundException"));
    assert_eq!(e.status, 400);

    // REST-JSON: Lambda.
    let list = c
        .call("lambda", "listFunctions", &json!({}), None)
        .await
        .unwrap();
    assert_eq!(list.output["Functions"], json!([]), "{}", list.output);
    let e = service_error(
        c.call(
            "lambda",
            "getFunction",
            &json!({"FunctionName": "missing"}),
            None,
        )
        .await,
    );
    assert_eq!(e.status, 404);
    assert_eq!(
        e.shape.as_deref(),
        Some("ResourceNotFoundException"),
        "{e:?}"
    );

    // REST-XML: S3, with a key that needs escaping and a greedy label.
    c.call("s3", "createBucket", &json!({"Bucket": "bucket-one"}), None)
        .await
        .unwrap();
    c.call(
        "s3",
        "putObject",
        &json!({"Bucket": "bucket-one", "Key": "dir/a b+é.txt", "Body": "hello"}),
        None,
    )
    .await
    .unwrap();
    let obj = c
        .call(
            "s3",
            "getObject",
            &json!({"Bucket": "bucket-one", "Key": "dir/a b+é.txt"}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(obj.output["Body"], json!("hello"));
    assert_eq!(obj.output["ContentLength"], json!(5));
    let listed = c
        .call(
            "s3",
            "listObjectsV2",
            &json!({"Bucket": "bucket-one"}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(listed.output["Contents"][0]["Key"], json!("dir/a b+é.txt"));
    assert_eq!(listed.output["KeyCount"], json!(1));
    let e = service_error(
        c.call(
            "s3",
            "getObject",
            &json!({"Bucket": "bucket-one", "Key": "missing"}),
            None,
        )
        .await,
    );
    assert_eq!((e.code.as_str(), e.status), ("NoSuchKey", 404));
    assert_eq!(e.shape.as_deref(), Some("NoSuchKey"));

    // Query: SNS, and IAM (a global service).
    let topic = c
        .call("sns", "createTopic", &json!({"Name": "t"}), None)
        .await
        .unwrap();
    let arn = topic.output["TopicArn"].as_str().unwrap().to_string();
    let published = c
        .call(
            "sns",
            "publish",
            &json!({"TopicArn": arn, "Message": "hi", "MessageAttributes": {"a": {"DataType": "String", "StringValue": "v"}}}),
            None,
        )
        .await
        .unwrap();
    assert!(
        published.output["MessageId"].is_string(),
        "{}",
        published.output
    );
    let e = service_error(
        c.call(
            "sns",
            "publish",
            &json!({"TopicArn": "arn:aws:sns:us-east-1:123456789012:missing", "Message": "x"}),
            None,
        )
        .await,
    );
    assert_eq!(e.shape.as_deref(), Some("NotFoundException"), "{e:?}");
    c.call("iam", "createUser", &json!({"UserName": "u"}), None)
        .await
        .unwrap();
    let users = c.call("iam", "listUsers", &json!({}), None).await.unwrap();
    assert_eq!(
        users.output["Users"][0]["UserName"],
        json!("u"),
        "{}",
        users.output
    );
    let e = service_error(
        c.call("iam", "getUser", &json!({"UserName": "nobody"}), None)
            .await,
    );
    assert_eq!(e.code, "NoSuchEntity");
    assert_eq!(e.shape.as_deref(), Some("NoSuchEntityException"));

    // EC2.
    let vpcs = c
        .call("ec2", "describeVpcs", &json!({}), None)
        .await
        .unwrap();
    assert!(
        vpcs.output["Vpcs"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "{}",
        vpcs.output
    );
    let e = service_error(
        c.call(
            "ec2",
            "describeInstances",
            &json!({"InstanceIds": ["i-00000000000000000"]}),
            None,
        )
        .await,
    );
    assert_eq!(e.code, "InvalidInstanceID.NotFound", "{e:?}");

    // An unreachable endpoint is a client error, not a service one.
    let down = Client::new([("sqs".to_string(), "http://127.0.0.1:9".to_string())].into());
    match down.call("sqs", "listQueues", &json!({}), None).await {
        Err(CallError::Client(m)) => {
            assert!(m.starts_with("Unable to execute HTTP request"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

/// What a stub in AWS's place receives: the Host, the JSON protocol's headers, a SigV4
/// Authorization for the service and region, and the body in the model's names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_carries_the_host_headers_and_body_aws_expects() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stub = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len || n == 0 {
                    break;
                }
            }
        }
        let reply =
            "{\"executionArn\":\"arn:aws:states:us-east-1:1:execution:m:e\",\"startDate\":1.7E9}";
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: r-1\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        )
        .unwrap();
        String::from_utf8(buf).unwrap()
    });
    let c = Client::new([("sfn".to_string(), format!("http://127.0.0.1:{port}"))].into());
    let r = c
        .call(
            "sfn",
            "startExecution",
            &json!({"StateMachineArn": "arn:aws:states:us-east-1:1:stateMachine:m", "Input": {"k": 1}}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.request_id, "r-1");
    assert_eq!(
        r.output["ExecutionArn"],
        json!("arn:aws:states:us-east-1:1:execution:m:e")
    );
    assert_eq!(r.output["StartDate"], json!("2023-11-14T22:13:20.000Z"));
    let seen = stub.join().unwrap();
    let (head, body) = seen.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("post / http/1.1"), "{head}");
    assert!(head.contains(&format!("host: 127.0.0.1:{port}")), "{head}");
    assert!(
        head.contains("x-amz-target: awsstepfunctions.startexecution"),
        "{head}"
    );
    assert!(
        head.contains("content-type: application/x-amz-json-1.0"),
        "{head}"
    );
    assert!(head.contains("x-amz-date: "), "{head}");
    assert!(
        head.contains("authorization: aws4-hmac-sha256 credential=")
            && head.contains("/us-east-1/states/aws4_request"),
        "{head}"
    );
    // PascalCase in, the model's camelCase on the wire; a JSON Input sent as its text.
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        body,
        json!({"stateMachineArn": "arn:aws:states:us-east-1:1:stateMachine:m", "input": "{\"k\":1}"})
    );
}
