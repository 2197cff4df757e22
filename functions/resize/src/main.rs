//! The resize function as an AWS Lambda function (`lambda_runtime`): deployable to AWS
//! as is, and run unchanged by shoal. S3 comes from the standard environment
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials); `KEEP_ASPECT=1` keeps proportions.

// The same allocator as shoal: glibc's malloc was 5 % of this function's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use futures::future::BoxFuture;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{path::Path, ObjectStoreExt};
use serde_json::Value;
use shoal_resize::{process_batch, Objects};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct S3 {
    clients: Mutex<HashMap<String, Arc<AmazonS3>>>,
}

impl S3 {
    fn client(&self, bucket: &str) -> Result<Arc<AmazonS3>, String> {
        let mut c = self.clients.lock().map_err(|e| e.to_string())?;
        if let Some(s) = c.get(bucket) {
            return Ok(s.clone());
        }
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(true);
        if let Ok(e) =
            std::env::var("AWS_ENDPOINT_URL_S3").or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        let s = Arc::new(b.build().map_err(|e| e.to_string())?);
        c.insert(bucket.to_string(), s.clone());
        Ok(s)
    }
}

impl Objects for S3 {
    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let c = self.client(bucket)?;
            let r = c.get(&Path::from(key)).await.map_err(|e| e.to_string())?;
            Ok(r.bytes().await.map_err(|e| e.to_string())?.to_vec())
        })
    }
    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let c = self.client(bucket)?;
            c.put(&Path::from(key), body.into())
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let objects: Arc<dyn Objects> = Arc::new(S3::default());
    let cpu = Arc::new(tokio::sync::Semaphore::new(shoal_resize::cpu_slots()));
    let keep = std::env::var("KEEP_ASPECT").is_ok_and(|v| v == "1");
    lambda_runtime::run(service_fn(move |e: LambdaEvent<Value>| {
        let (objects, cpu) = (objects.clone(), cpu.clone());
        async move {
            process_batch(e.payload, objects, cpu, keep)
                .await
                .map_err(|f| Diagnostic {
                    error_type: "Resize.BatchFailed".into(),
                    error_message: format!("more than half the batch failed: {}", f.0),
                })
        }
    }))
    .await
}
