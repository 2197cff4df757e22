//! The Distributed Map ResultWriter: `manifest.json` plus `SUCCEEDED_n`, `FAILED_n` and
//! `PENDING_n` files, streamed as children finish.

use serde_json::{json, Value};
use shoal_asl::{OutputType, WriterConfig, WriterTransformation};
use shoal_buckets::{Buckets, ObjectWriter};
use shoal_engine::maprun::Record;
use shoal_expr::{compact, errors, Failure};
use std::sync::Arc;

/// AWS starts a new result file every 5 GB.
const FILE_LIMIT: u64 = 5 * 1024 * 1024 * 1024;
/// Bytes gathered in memory before they go to the object.
const FLUSH_AT: usize = 4 * 1024 * 1024;

fn writer_failed(cause: impl Into<String>) -> Failure {
    Failure::new(errors::RESULT_WRITER_FAILED, cause)
}

struct Part {
    status: &'static str,
    files: Vec<Value>,
    open: Option<(String, ObjectWriter)>,
    /// Entries and bytes in the open file.
    entries: u64,
    bytes: u64,
    buf: Vec<u8>,
}

/// Turns records into the bytes of their file entries.
#[derive(Debug, Clone, Copy)]
pub struct Encoder {
    flatten: bool,
}

/// One record's entries, serialized: `bytes[ends[i-1]..ends[i]]` is entry `i`.
#[derive(Debug, Default)]
pub struct Encoded {
    part: usize,
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Encoder {
    pub fn encode(&self, record: Record) -> Encoded {
        let (part, v) = match record {
            Record::Succeeded(v) => (0, v),
            Record::Failed(v) => (1, v),
            Record::Pending(v) => (2, v),
        };
        let mut e = Encoded {
            part,
            ..Encoded::default()
        };
        let mut push = |v: &Value| {
            let _ = serde_json::to_writer(&mut e.bytes, v);
            e.ends.push(e.bytes.len());
        };
        match &v {
            Value::Array(a) if part == 0 && self.flatten => a.iter().for_each(&mut push),
            v => push(v),
        }
        e
    }
}

/// Streams a map run's records into result files.
pub struct ResultWriter {
    store: Arc<Buckets>,
    bucket: String,
    dir: String,
    map_run_arn: String,
    jsonl: bool,
    flatten: bool,
    parts: [Part; 3],
    file_limit: u64,
    /// Set when the run is durable: files are resumable (see [`Buckets::resumable_writer`]).
    spill: Option<std::path::PathBuf>,
}

impl ResultWriter {
    /// `params` is the ResultWriter's evaluated `{Bucket, Prefix}`.
    pub fn new(
        store: Option<Arc<Buckets>>,
        params: &Value,
        config: WriterConfig,
        map_run_arn: &str,
    ) -> Result<ResultWriter, Failure> {
        let Some(store) = store else {
            return Err(writer_failed(shoal_buckets::Error::NoBuckets.to_string()));
        };
        let bucket = params
            .get("Bucket")
            .and_then(Value::as_str)
            .ok_or_else(|| writer_failed("the ResultWriter Parameters need a string Bucket"))?;
        let prefix = params
            .get("Prefix")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_end_matches('/');
        let run_id = map_run_arn.rsplit(':').next().unwrap_or("run");
        let dir = if prefix.is_empty() {
            run_id.to_string()
        } else {
            format!("{prefix}/{run_id}")
        };
        let part = |status| Part {
            status,
            files: Vec::new(),
            open: None,
            entries: 0,
            bytes: 0,
            buf: Vec::new(),
        };
        Ok(ResultWriter {
            store,
            bucket: bucket.to_string(),
            dir,
            map_run_arn: map_run_arn.to_string(),
            jsonl: config.output_type == OutputType::Jsonl,
            flatten: config.transformation == WriterTransformation::Flatten,
            parts: [part("SUCCEEDED"), part("FAILED"), part("PENDING")],
            file_limit: FILE_LIMIT,
            spill: None,
        })
    }

    /// Makes the files resumable; S3-bound bytes wait in `spill` until the run ends.
    pub fn durable(mut self, spill: std::path::PathBuf) -> ResultWriter {
        self.spill = Some(spill);
        self
    }

    /// Hands everything written so far to the OS and describes where the files stand,
    /// for [`ResultWriter::resume`].
    pub async fn checkpoint(&mut self) -> Result<Value, Failure> {
        let mut parts = Vec::new();
        for p in &mut self.parts {
            Self::flush(p).await?;
            if let Some((key, w)) = &mut p.open {
                w.flush()
                    .await
                    .map_err(|e| writer_failed(format!("writing {key}: {e}")))?;
            }
            parts.push(json!({
                "files": p.files,
                "open": p.open.as_ref().map(|(k, _)| k.clone()),
                "entries": p.entries,
                "bytes": p.bytes,
            }));
        }
        Ok(json!({ "parts": parts }))
    }

    /// Reopens the files as a checkpoint left them. A redrive keeps the SUCCEEDED files
    /// and drops the FAILED and PENDING ones: every child in them runs again.
    pub async fn resume(mut self, state: &Value, redrive: bool) -> Result<ResultWriter, Failure> {
        let spill = self
            .spill
            .clone()
            .ok_or_else(|| writer_failed("resuming needs a durable writer"))?;
        let Some(parts) = state.get("parts").and_then(Value::as_array) else {
            return Ok(self);
        };
        for (i, saved) in parts.iter().enumerate().take(3) {
            let files: Vec<Value> = saved
                .get("files")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let open = saved.get("open").and_then(Value::as_str);
            if redrive && i > 0 {
                for f in files.iter().filter_map(|f| f.get("Key")?.as_str()) {
                    self.store
                        .delete(&self.bucket, f)
                        .await
                        .map_err(|e| writer_failed(e.to_string()))?;
                }
                continue;
            }
            let p = &mut self.parts[i];
            p.files = files;
            if let Some(key) = open {
                let bytes = saved.get("bytes").and_then(Value::as_u64).unwrap_or(0);
                let w = self
                    .store
                    .resumable_writer(&self.bucket, key, &spill, Some(bytes))
                    .await
                    .map_err(|e| writer_failed(e.to_string()))?;
                p.open = Some((key.to_string(), w));
                p.bytes = bytes;
                p.entries = saved.get("entries").and_then(Value::as_u64).unwrap_or(0);
            }
        }
        Ok(self)
    }

    /// How this writer's records become bytes; cheap to copy to where children run.
    pub fn encoder(&self) -> Encoder {
        Encoder {
            flatten: self.flatten,
        }
    }

    /// Appends one child's encoded record to its file.
    pub async fn write(&mut self, rec: Encoded) -> Result<(), Failure> {
        let mut start = 0;
        for &end in &rec.ends {
            self.entry(rec.part, &rec.bytes[start..end]).await?;
            start = end;
        }
        Ok(())
    }

    async fn entry(&mut self, i: usize, text: &[u8]) -> Result<(), Failure> {
        let p = &self.parts[i];
        if p.open.is_some() && p.bytes + (p.buf.len() + text.len() + 2) as u64 > self.file_limit {
            self.close(i).await?;
        }
        if self.parts[i].open.is_none() {
            self.open(i).await?;
        }
        let jsonl = self.jsonl;
        let p = &mut self.parts[i];
        if !jsonl && p.entries > 0 {
            p.buf.push(b',');
        }
        p.buf.extend_from_slice(text);
        if jsonl {
            p.buf.push(b'\n');
        }
        p.entries += 1;
        if p.buf.len() >= FLUSH_AT {
            Self::flush(p).await?;
        }
        Ok(())
    }

    async fn open(&mut self, i: usize) -> Result<(), Failure> {
        let key = format!(
            "{}/{}_{}.{}",
            self.dir,
            self.parts[i].status,
            self.parts[i].files.len(),
            if self.jsonl { "jsonl" } else { "json" }
        );
        let w = match &self.spill {
            Some(spill) => {
                self.store
                    .resumable_writer(&self.bucket, &key, spill, None)
                    .await
            }
            None => self.store.writer(&self.bucket, &key).await,
        }
        .map_err(|e| writer_failed(e.to_string()))?;
        let p = &mut self.parts[i];
        p.open = Some((key, w));
        p.entries = 0;
        p.bytes = 0;
        if !self.jsonl {
            p.buf.push(b'[');
        }
        Ok(())
    }

    async fn flush(p: &mut Part) -> Result<(), Failure> {
        if let Some((key, w)) = &mut p.open {
            p.bytes += p.buf.len() as u64;
            w.write(&p.buf)
                .await
                .map_err(|e| writer_failed(format!("writing {key}: {e}")))?;
            p.buf.clear();
        }
        Ok(())
    }

    async fn close(&mut self, i: usize) -> Result<(), Failure> {
        let jsonl = self.jsonl;
        let p = &mut self.parts[i];
        if p.open.is_none() {
            return Ok(());
        }
        if !jsonl {
            p.buf.push(b']');
        }
        Self::flush(p).await?;
        let (key, w) = p.open.take().expect("an open file");
        w.finish()
            .await
            .map_err(|e| writer_failed(format!("writing {key}: {e}")))?;
        p.files.push(json!({"Key": key, "Size": p.bytes}));
        Ok(())
    }

    /// Closes the files and writes the manifest; returns its `{Bucket, Key}`.
    pub async fn finish(&mut self) -> Result<Value, Failure> {
        for i in 0..3 {
            self.close(i).await?;
        }
        let files = json!({
            "FAILED": self.parts[1].files, "PENDING": self.parts[2].files, "SUCCEEDED": self.parts[0].files,
        });
        let key = format!("{}/manifest.json", self.dir);
        let manifest = json!({"DestinationBucket": self.bucket, "MapRunArn": self.map_run_arn, "ResultFiles": files});
        self.store
            .put(&self.bucket, &key, compact(&manifest).into_bytes())
            .await
            .map_err(|e| writer_failed(e.to_string()))?;
        Ok(json!({"Bucket": self.bucket, "Key": key}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_manifest_and_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        let store = Arc::new(Buckets::local(dir.path()));
        let arn = "arn:aws:states:us-east-1:1:mapRun:sm/M:abc";
        let params = json!({"Bucket": "out", "Prefix": "runs/"});
        let mut w =
            ResultWriter::new(Some(store.clone()), &params, WriterConfig::default(), arn).unwrap();
        w.file_limit = 40;
        for i in 0..3 {
            w.write(
                w.encoder()
                    .encode(Record::Succeeded(json!({"Output": i.to_string()}))),
            )
            .await
            .unwrap();
        }
        w.write(
            w.encoder()
                .encode(Record::Failed(json!({"Error": "E", "Cause": "c"}))),
        )
        .await
        .unwrap();
        let d = w.finish().await.unwrap();
        assert_eq!(d, json!({"Bucket": "out", "Key": "runs/abc/manifest.json"}));
        let get = |k: &str| {
            serde_json::from_slice::<Value>(&std::fs::read(dir.path().join("out").join(k)).unwrap())
                .unwrap()
        };
        let manifest = get("runs/abc/manifest.json");
        assert_eq!(manifest["MapRunArn"], arn);
        let files = &manifest["ResultFiles"]["SUCCEEDED"];
        assert_eq!(
            files.as_array().unwrap().len(),
            2,
            "split at the size limit: {files}"
        );
        assert_eq!(
            get("runs/abc/SUCCEEDED_0.json"),
            json!([{"Output": "0"}, {"Output": "1"}])
        );
        assert_eq!(get("runs/abc/SUCCEEDED_1.json"), json!([{"Output": "2"}]));
        assert_eq!(files[1]["Size"], 16);
        assert_eq!(get("runs/abc/FAILED_0.json")[0]["Error"], "E");

        let config = WriterConfig {
            output_type: OutputType::Jsonl,
            transformation: WriterTransformation::Flatten,
        };
        let mut w =
            ResultWriter::new(Some(store), &json!({"Bucket": "out"}), config, "x:run2").unwrap();
        w.write(w.encoder().encode(Record::Succeeded(json!([1, 2]))))
            .await
            .unwrap();
        assert_eq!(w.finish().await.unwrap()["Key"], "run2/manifest.json");
        let body = std::fs::read(dir.path().join("out/run2/SUCCEEDED_0.jsonl")).unwrap();
        assert_eq!(body, b"1\n2\n");
    }
}
