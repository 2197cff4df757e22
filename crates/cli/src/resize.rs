//! The `resize` builtin (`--features resize`): the seed demo's function run in shoal's
//! process, reading and writing the buckets directly. It lives in the binary, not in
//! `tasks`, so that only builds asking for it compile libjpeg-turbo.

use bytes::Bytes;
use futures::future::{BoxFuture, LocalBoxFuture};
use serde_json::{json, Value};
use shoal_buckets::Buckets;
use shoal_lambda::Reply;
use shoal_tasks::Builtin;
use std::sync::{Arc, OnceLock};

#[derive(Default)]
pub struct Resize {
    workers: OnceLock<Arc<shoal_resize::Workers>>,
}

/// The resize builtin's view of the buckets, on one of its worker threads. Local files
/// are read and written right there; S3 requests run on shoal's runtime, whose clients
/// they share.
struct StoreObjects {
    store: Arc<Buckets>,
    runtime: tokio::runtime::Handle,
}

impl StoreObjects {
    /// Runs a store call on shoal's runtime, where the store's S3 connections live.
    async fn on_shoal<T: Send + 'static>(
        &self,
        call: impl std::future::Future<Output = shoal_buckets::Result<T>> + Send + 'static,
    ) -> Result<T, String> {
        match self.runtime.spawn(call).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl shoal_resize::Objects for StoreObjects {
    fn get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> LocalBoxFuture<'a, Result<bytes::Bytes, String>> {
        Box::pin(async move {
            match &*self.store {
                Buckets::Local(l) => l
                    .get(bucket, key)
                    .map(Into::into)
                    .map_err(|e| e.to_string()),
                _ => {
                    let (store, b, k) = (self.store.clone(), bucket.to_string(), key.to_string());
                    self.on_shoal(async move { store.get(&b, &k).await })
                        .await
                        .map(Into::into)
                }
            }
        })
    }
    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
    ) -> LocalBoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match &*self.store {
                Buckets::Local(l) => l.put(bucket, key, &body).map_err(|e| e.to_string()),
                _ => {
                    let (store, b, k) = (self.store.clone(), bucket.to_string(), key.to_string());
                    self.on_shoal(async move { store.put(&b, &k, body).await })
                        .await
                }
            }
        })
    }
}

impl Builtin for Resize {
    fn invoke<'a>(
        &'a self,
        payload: Bytes,
        buckets: Option<&'a Arc<Buckets>>,
    ) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let Some(store) = buckets else {
                return Reply::Unknown("the resize builtin has no buckets".into());
            };
            let event: Value = match serde_json::from_slice(&payload) {
                Ok(v) => v,
                Err(e) => return Reply::Unknown(format!("the payload is not JSON: {e}")),
            };
            let workers = match self.workers.get() {
                Some(w) => w.clone(),
                None => {
                    let (store, runtime) = (store.clone(), tokio::runtime::Handle::current());
                    let started =
                        shoal_resize::Workers::start(shoal_resize::cpu_slots(), move || {
                            Box::new(StoreObjects {
                                store: store.clone(),
                                runtime: runtime.clone(),
                            })
                        });
                    match started {
                        Ok(w) => self.workers.get_or_init(|| Arc::new(w)).clone(),
                        Err(e) => {
                            return Reply::Unknown(format!("the resize builtin cannot start: {e}"))
                        }
                    }
                }
            };
            match workers.run_batch(event, false).await {
                Ok(v) => Reply::Ok(Bytes::from(v.to_string())),
                Err(shoal_resize::BatchFailed(v)) => {
                    let error_type = "Resize.BatchFailed".to_string();
                    let body = json!({"errorMessage": format!("more than half the batch failed: {v}"), "errorType": error_type});
                    Reply::HandlerError {
                        error_type,
                        body: Bytes::from(body.to_string()),
                    }
                }
            }
        })
    }
}
