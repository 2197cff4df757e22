//! The resize function as an AWS Lambda function (`lambda_runtime`): deployable to AWS
//! as is, and run unchanged by shoal. S3 comes from the standard environment
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials); `KEEP_ASPECT=1` keeps proportions.

// The same allocator as shoal: glibc's malloc was 5 % of this function's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod plain_http;

use futures::future::LocalBoxFuture;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::ClientConfigKey;
use object_store::{path::Path, ObjectStoreExt};
use serde_json::Value;
use shoal_resize::{Objects, Workers};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// One worker thread's S3 clients, one per bucket.
#[derive(Default)]
struct S3 {
    clients: RefCell<HashMap<String, Rc<AmazonS3>>>,
}

impl S3 {
    fn client(&self, bucket: &str) -> Result<Rc<AmazonS3>, String> {
        if let Some(s) = self.clients.borrow().get(bucket) {
            return Ok(s.clone());
        }
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(true);
        if let Ok(e) =
            std::env::var("AWS_ENDPOINT_URL_S3").or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        {
            // Plain HTTP needs no certificates: loading the system's took milliseconds
            // per client, and there is one client per bucket per thread.
            let plain = e.starts_with("http://");
            b = b
                .with_endpoint(e)
                .with_virtual_hosted_style_request(false)
                .with_config(
                    AmazonS3ConfigKey::Client(ClientConfigKey::NoSystemCertificates),
                    plain.to_string(),
                )
                .with_http_connector(plain_http::PlainHttpConnector);
        }
        let s = Rc::new(b.build().map_err(|e| e.to_string())?);
        self.clients
            .borrow_mut()
            .insert(bucket.to_string(), s.clone());
        Ok(s)
    }
}

impl Objects for S3 {
    fn get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> LocalBoxFuture<'a, Result<bytes::Bytes, String>> {
        Box::pin(async move {
            let c = self.client(bucket)?;
            let r = c.get(&Path::from(key)).await.map_err(|e| e.to_string())?;
            r.bytes().await.map_err(|e| e.to_string())
        })
    }
    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
    ) -> LocalBoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let c = self.client(bucket)?;
            c.put(&Path::from(key), body.into())
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}

// The Runtime API loop only waits for batches: the photos' I/O runs on the workers.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let workers = Arc::new(Workers::start(shoal_resize::cpu_slots(), || {
        Box::new(S3::default())
    })?);
    let keep = std::env::var("KEEP_ASPECT").is_ok_and(|v| v == "1");
    lambda_runtime::run(service_fn(move |e: LambdaEvent<Value>| {
        let workers = workers.clone();
        async move {
            workers
                .run_batch(e.payload, keep)
                .await
                .map_err(|f| Diagnostic {
                    error_type: "Resize.BatchFailed".into(),
                    error_message: format!("more than half the batch failed: {}", f.0),
                })
        }
    }))
    .await
}
