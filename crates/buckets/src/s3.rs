//! Buckets on an S3 endpoint (AWS, SeaweedFS, MinIO, ...) through `object_store`.

use crate::{check_key, Error, ObjectMeta, Result};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use shoal_aws::Profile;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How to reach the endpoint. Unset fields come from the standard AWS environment
/// variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_REGION`, ...).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

#[derive(Debug, Clone)]
pub struct S3Buckets {
    options: S3Options,
    clients: Arc<Mutex<HashMap<String, Arc<AmazonS3>>>>,
}

fn s3_error(place: String) -> impl Fn(object_store::Error) -> Error {
    move |e| match e {
        object_store::Error::NotFound { .. } => {
            let (bucket, key) = place
                .trim_start_matches("s3://")
                .split_once('/')
                .unwrap_or((&place, ""));
            Error::NoSuchKey {
                bucket: bucket.into(),
                key: key.into(),
            }
        }
        other => Error::S3 {
            place: place.clone(),
            message: other.to_string(),
        },
    }
}

impl S3Buckets {
    pub fn new(options: S3Options) -> S3Buckets {
        // reqwest's TLS needs a process-wide provider; another may be installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        S3Buckets {
            options,
            clients: Default::default(),
        }
    }

    fn client(&self, bucket: &str) -> Result<Arc<AmazonS3>> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(bucket) {
            return Ok(c.clone());
        }
        // An http:// endpoint (from any source) is the user's explicit choice.
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(true);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            let p = Profile::load();
            for (key, v) in [
                (
                    object_store::aws::AmazonS3ConfigKey::AccessKeyId,
                    p.access_key_id,
                ),
                (
                    object_store::aws::AmazonS3ConfigKey::SecretAccessKey,
                    p.secret_access_key,
                ),
                (object_store::aws::AmazonS3ConfigKey::Token, p.session_token),
                (object_store::aws::AmazonS3ConfigKey::Region, p.region),
                (
                    object_store::aws::AmazonS3ConfigKey::Endpoint,
                    p.endpoint_url,
                ),
            ] {
                if let Some(v) = v {
                    b = b.with_config(key, v);
                }
            }
        }
        if let Some(e) = &self.options.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        if let Some(r) = &self.options.region {
            b = b.with_region(r);
        } else if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            b = b.with_region("us-east-1");
        }
        let c = Arc::new(b.build().map_err(s3_error(format!("s3://{bucket}")))?);
        clients.insert(bucket.to_string(), c.clone());
        Ok(c)
    }

    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out: Vec<ObjectMeta> = self.pages(bucket, prefix)?.try_collect().await?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The objects under `prefix`, fetched a ListObjectsV2 page at a time as the
    /// stream is read; S3 returns them in key order.
    pub fn pages(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<ObjectMeta>>> {
        let client = self.client(bucket)?;
        // object_store lists by whole path segments; S3 prefixes are plain string prefixes.
        let dir = prefix.rfind('/').map(|i| Path::from(&prefix[..i]));
        let place = format!("s3://{bucket}/{prefix}");
        let (bucket, prefix) = (bucket.to_string(), prefix.to_string());
        Ok(client
            .list(dir.as_ref())
            .map_err(s3_error(place))
            .map_err(move |e| match e {
                Error::NoSuchKey { .. } => Error::NoSuchBucket(bucket.clone()),
                other => other,
            })
            .try_filter_map(move |m| {
                let key = m.location.to_string();
                let keep = key.starts_with(&prefix);
                async move {
                    Ok(keep.then(|| ObjectMeta {
                        key,
                        size: m.size,
                        etag: m.e_tag.unwrap_or_default(),
                        last_modified: m.last_modified.timestamp(),
                    }))
                }
            })
            .boxed())
    }

    async fn get_result(&self, bucket: &str, key: &str) -> Result<object_store::GetResult> {
        check_key(key)?;
        let client = self.client(bucket)?;
        client
            .get(&Path::from(key))
            .await
            .map_err(s3_error(format!("s3://{bucket}/{key}")))
    }

    /// A blocking reader over the object's body, streamed as it arrives, and the
    /// object's size.
    pub async fn open(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(Box<dyn std::io::Read + Send>, u64)> {
        let r = self.get_result(bucket, key).await?;
        let size = r.meta.size;
        let stream = r.into_stream().map_err(std::io::Error::other);
        let reader = tokio_util::io::StreamReader::new(stream);
        Ok((Box::new(tokio_util::io::SyncIoBridge::new(reader)), size))
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        let place = format!("s3://{bucket}/{key}");
        let r = self.get_result(bucket, key).await?;
        Ok(r.bytes().await.map_err(s3_error(place))?.to_vec())
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<()> {
        check_key(key)?;
        let client = self.client(bucket)?;
        client
            .put(&Path::from(key), body.into())
            .await
            .map_err(s3_error(format!("s3://{bucket}/{key}")))?;
        Ok(())
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        check_key(key)?;
        match self.client(bucket)?.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error(format!("s3://{bucket}/{key}"))(e)),
        }
    }

    /// A streaming upload (multipart for large objects).
    pub fn writer(&self, bucket: &str, key: &str) -> Result<object_store::buffered::BufWriter> {
        check_key(key)?;
        let client: Arc<dyn ObjectStore> = self.client(bucket)?;
        Ok(object_store::buffered::BufWriter::new(
            client,
            Path::from(key),
        ))
    }
}
