//! Buckets: local folders (bucket `b` is the folder `<root>/b`; keys never escape it)
//! or an S3 endpoint through the `object_store` crate, with writers that nobody sees
//! until they finish and that a restart can cut back and go on with.

mod s3;

pub use s3::{S3Buckets, S3Options};

use std::io::ErrorKind::{AlreadyExists, NotADirectory, NotFound};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid key {key:?}: {why}")]
    InvalidKey { key: String, why: &'static str },
    #[error("invalid bucket name {0:?}")]
    InvalidBucket(String),
    #[error("the bucket {0:?} does not exist")]
    NoSuchBucket(String),
    #[error("the object s3://{bucket}/{key} does not exist")]
    NoSuchKey { bucket: String, key: String },
    #[error("no buckets folder is configured (pass --buckets DIR)")]
    NoBuckets,
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("S3 error on {place}: {message}")]
    S3 { place: String, message: String },
    #[error("a background task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One entry of a listing, as `s3:listObjectsV2` items show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: i64,
}

/// Buckets as subfolders of one root folder.
#[derive(Debug, Clone)]
pub struct LocalBuckets {
    root: PathBuf,
}

/// Rejects keys that could leave the bucket folder.
/// A key under an object's name (`a/b` when `a` is an object): S3 holds both, a folder
/// cannot.
fn object_on_path(key: &str) -> Error {
    Error::InvalidKey {
        key: key.to_string(),
        why: "a folder on its path is an object, and local buckets cannot hold both",
    }
}

pub fn check_key(key: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::InvalidKey {
            key: key.to_string(),
            why,
        })
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.contains('\0') {
        return bad("it contains a NUL byte");
    }
    if key.starts_with('/') || key.starts_with('\\') || Path::new(key).is_absolute() {
        return bad("it is an absolute path");
    }
    if Path::new(key)
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
        // `components` drops a `.` that is not first: check the segments themselves.
        || key.split('/').any(|p| p == ".." || p == ".")
    {
        return bad("it contains '..' or '.' segments");
    }
    Ok(())
}

fn check_bucket(bucket: &str) -> Result<()> {
    let ok = !bucket.is_empty()
        && bucket.len() <= 255
        && !bucket.contains(['/', '\\', '\0'])
        && bucket != "."
        && bucket != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidBucket(bucket.to_string()))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

impl LocalBuckets {
    pub fn new(root: impl Into<PathBuf>) -> LocalBuckets {
        LocalBuckets { root: root.into() }
    }

    fn bucket_dir(&self, bucket: &str) -> Result<PathBuf> {
        check_bucket(bucket)?;
        let dir = self.root.join(bucket);
        if !dir.is_dir() {
            return Err(Error::NoSuchBucket(bucket.to_string()));
        }
        Ok(dir)
    }

    /// The bucket's folder, without checking that it exists: callers look only when a
    /// file operation fails, which saves a `stat` on every object.
    fn bucket_path(&self, bucket: &str) -> Result<PathBuf> {
        check_bucket(bucket)?;
        Ok(self.root.join(bucket))
    }

    fn bucket_exists(&self, bucket: &str) -> bool {
        self.root.join(bucket).is_dir()
    }

    /// Why `key` in `bucket` was not found: the bucket or the key.
    fn not_found(&self, bucket: &str, key: &str) -> Error {
        if self.bucket_exists(bucket) {
            Error::NoSuchKey {
                bucket: bucket.into(),
                key: key.into(),
            }
        } else {
            Error::NoSuchBucket(bucket.into())
        }
    }

    /// An object's file, open, and its metadata.
    pub fn open(&self, bucket: &str, key: &str) -> Result<(std::fs::File, std::fs::Metadata)> {
        check_key(key)?;
        let path = self.bucket_path(bucket)?.join(key);
        match std::fs::File::open(&path) {
            Ok(f) => match f.metadata() {
                Ok(m) if m.is_file() => Ok((f, m)),
                Ok(_) => Err(self.not_found(bucket, key)),
                Err(e) => Err(io(&path)(e)),
            },
            // `a/b` when `a` is an object: no such key, as on S3.
            Err(e) if matches!(e.kind(), NotFound | NotADirectory) => {
                Err(self.not_found(bucket, key))
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        let (mut f, m) = self.open(bucket, key)?;
        let mut body = Vec::with_capacity(m.len() as usize);
        std::io::Read::read_to_end(&mut f, &mut body)
            .map_err(|e| io(&self.root.join(bucket).join(key))(e))?;
        Ok(body)
    }

    /// Writes through a temporary file and a rename, so no reader sees half an object.
    /// Folders are made only when the first write fails for want of them.
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) -> Result<()> {
        check_key(key)?;
        let path = self.bucket_path(bucket)?.join(key);
        let tmp = unique_tmp(&path);
        match std::fs::write(&tmp, body) {
            Ok(()) => {}
            Err(e) if e.kind() == NotADirectory => return Err(object_on_path(key)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !self.bucket_exists(bucket) {
                    return Err(Error::NoSuchBucket(bucket.into()));
                }
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| match e.kind() {
                        NotADirectory | AlreadyExists => object_on_path(key),
                        _ => io(parent)(e),
                    })?;
                }
                std::fs::write(&tmp, body).map_err(io(&tmp))?;
            }
            Err(e) => return Err(io(&tmp)(e)),
        }
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(&path)(e)
        })
    }

    /// Every object under `prefix`, in key order (as S3 lists them).
    pub fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.walk(bucket, prefix)?.collect()
    }

    /// The objects under `prefix` one at a time, in S3's key order, holding one
    /// folder's names per level of depth rather than every key.
    pub fn walk(&self, bucket: &str, prefix: &str) -> Result<LocalWalk> {
        let root = self.bucket_dir(bucket)?;
        let mut w = LocalWalk {
            root,
            prefix: prefix.to_string(),
            stack: Vec::new(),
        };
        w.open(String::new())?;
        Ok(w)
    }
}

/// A folder being walked: its key prefix (`""` or ending in `/`) and the names left,
/// largest first. A subfolder's name carries a trailing `/`.
struct Folder {
    key: String,
    names: Vec<Box<str>>,
}

/// A local bucket's listing in S3's order: byte order of the keys. A folder `a` holds
/// the keys `a/...`, which sort as `a/` does among its siblings (`a-b` < `a/b` <
/// `a0`), so sorting each folder's names with `/` appended to subfolders and walking
/// depth first yields every key in order.
pub struct LocalWalk {
    root: PathBuf,
    prefix: String,
    stack: Vec<Folder>,
}

impl LocalWalk {
    fn open(&mut self, key: String) -> Result<()> {
        let dir = self.root.join(&key);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // Removed while we walked: it holds nothing now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !key.is_empty() => return Ok(()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            let ft = entry.file_type().map_err(io(&entry.path()))?;
            let mut name = entry.file_name().to_string_lossy().replace('\\', "/");
            if ft.is_dir() {
                name.push('/');
            }
            let full_len = key.len() + name.len();
            let p = &self.prefix;
            // Only names that can lead to a key under the prefix.
            let relevant = if p.len() <= full_len {
                p.as_bytes()
                    .iter()
                    .zip(key.bytes().chain(name.bytes()))
                    .all(|(a, b)| *a == b)
            } else {
                ft.is_dir() && p.starts_with(&key) && p[key.len()..].starts_with(&name)
            };
            if relevant {
                names.push(name.into_boxed_str());
            }
        }
        names.sort_unstable_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
        self.stack.push(Folder { key, names });
        Ok(())
    }
}

impl Iterator for LocalWalk {
    type Item = Result<ObjectMeta>;

    fn next(&mut self) -> Option<Result<ObjectMeta>> {
        loop {
            let top = self.stack.last_mut()?;
            let Some(name) = top.names.pop() else {
                self.stack.pop();
                continue;
            };
            let key = format!("{}{name}", top.key);
            if key.ends_with('/') {
                if let Err(e) = self.open(key) {
                    return Some(Err(e));
                }
                continue;
            }
            if key.contains(".shoal-tmp-") {
                continue;
            }
            let path = self.root.join(&key);
            let md = match std::fs::symlink_metadata(&path) {
                Ok(md) => md,
                // Deleted since its folder was read.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Some(Err(io(&path)(e))),
            };
            let last_modified = md
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            // A cheap, stable ETag: size and mtime, since hashing every object would read it.
            let etag = format!("\"{:x}{:016x}\"", md.len(), last_modified);
            return Some(Ok(ObjectMeta {
                key,
                size: md.len(),
                etag,
                last_modified,
            }));
        }
    }
}

/// A listing read as it goes, in S3's key order: a local folder walked, or an S3
/// endpoint's pages fetched one after another.
pub enum Listing {
    Local(LocalWalk),
    S3 {
        rt: tokio::runtime::Handle,
        pages: futures::stream::BoxStream<'static, Result<ObjectMeta>>,
    },
}

impl Iterator for Listing {
    type Item = Result<ObjectMeta>;

    /// Blocks: call it on a blocking thread.
    fn next(&mut self) -> Option<Result<ObjectMeta>> {
        match self {
            Listing::Local(w) => w.next(),
            Listing::S3 { rt, pages } => rt.block_on(futures::StreamExt::next(pages)),
        }
    }
}

/// Where buckets live. Callers that may have none hold an `Option<Buckets>`.
#[derive(Debug, Clone)]
pub enum Buckets {
    Local(LocalBuckets),
    S3(s3::S3Buckets),
}

/// An object's bytes, ready to be read on a blocking thread.
pub enum Body {
    File(std::fs::File),
    Stream(Box<dyn std::io::Read + Send>),
}

impl Buckets {
    pub fn local(root: impl Into<PathBuf>) -> Buckets {
        Buckets::Local(LocalBuckets::new(root))
    }

    pub fn s3(options: S3Options) -> Buckets {
        Buckets::S3(s3::S3Buckets::new(options))
    }

    /// Every object under `prefix`, in key order.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>> {
        match self {
            Buckets::Local(l) => {
                let l = l.clone();
                let (b, p) = (bucket.to_string(), prefix.to_string());
                blocking(move || l.list(&b, &p)).await
            }
            Buckets::S3(s) => s.list(bucket, prefix).await,
        }
    }

    /// The objects under `prefix` in key order, read as the caller goes: for a
    /// blocking thread of the runtime `rt`.
    pub fn listing(
        &self,
        rt: &tokio::runtime::Handle,
        bucket: &str,
        prefix: &str,
    ) -> Result<Listing> {
        match self {
            Buckets::Local(l) => l.walk(bucket, prefix).map(Listing::Local),
            Buckets::S3(s) => Ok(Listing::S3 {
                rt: rt.clone(),
                pages: s.pages(bucket, prefix)?,
            }),
        }
    }

    /// Opens an object for streaming, with its size in bytes. Call from within a
    /// tokio runtime.
    pub async fn open(&self, bucket: &str, key: &str) -> Result<(Body, u64)> {
        match self {
            Buckets::Local(l) => l.open(bucket, key).map(|(f, m)| (Body::File(f), m.len())),
            Buckets::S3(s) => s
                .open(bucket, key)
                .await
                .map(|(r, size)| (Body::Stream(r), size)),
        }
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        match self {
            Buckets::Local(l) => {
                let l = l.clone();
                let (b, k) = (bucket.to_string(), key.to_string());
                blocking(move || l.get(&b, &k)).await
            }
            Buckets::S3(s) => s.get(bucket, key).await,
        }
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<()> {
        match self {
            Buckets::Local(l) => {
                let l = l.clone();
                let (b, k) = (bucket.to_string(), key.to_string());
                blocking(move || l.put(&b, &k, &body)).await
            }
            Buckets::S3(s) => s.put(bucket, key, body).await,
        }
    }
}

/// An object being written. Nobody sees it until [`ObjectWriter::finish`].
pub enum ObjectWriter {
    Local {
        file: tokio::fs::File,
        tmp: PathBuf,
        path: PathBuf,
    },
    S3(Box<object_store::buffered::BufWriter>),
    /// Bound for S3 but kept in a local file until finished, so a restart can truncate
    /// it to a checkpoint and go on: a multipart upload cannot be taken back.
    Spill {
        file: tokio::fs::File,
        tmp: PathBuf,
        s3: Box<s3::S3Buckets>,
        bucket: String,
        key: String,
    },
}

impl ObjectWriter {
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match self {
            ObjectWriter::Local { file, .. } => file.write_all(bytes).await,
            ObjectWriter::S3(w) => w.write_all(bytes).await,
            ObjectWriter::Spill { file, .. } => file.write_all(bytes).await,
        }
    }

    /// Hands what was written to the OS: a killed process loses none of it.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match self {
            ObjectWriter::Local { file, .. } | ObjectWriter::Spill { file, .. } => {
                file.flush().await
            }
            ObjectWriter::S3(w) => w.flush().await,
        }
    }

    pub async fn finish(self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match self {
            ObjectWriter::Local {
                mut file,
                tmp,
                path,
            } => {
                file.flush().await?;
                drop(file);
                tokio::fs::rename(&tmp, &path).await
            }
            ObjectWriter::S3(mut w) => w.shutdown().await,
            ObjectWriter::Spill {
                mut file,
                tmp,
                s3,
                bucket,
                key,
            } => {
                use tokio::io::AsyncReadExt;
                file.flush().await?;
                drop(file);
                let mut w = s3.writer(&bucket, &key).map_err(std::io::Error::other)?;
                let mut src = tokio::fs::File::open(&tmp).await?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = src.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    w.write_all(&buf[..n]).await?;
                }
                w.shutdown().await?;
                tokio::fs::remove_file(&tmp).await
            }
        }
    }
}

/// A temporary name beside `path`, unique per write: two writers of one key, or of
/// `a.jpg` and `a.png`, never share it. Listings skip `.shoal-tmp-` names.
fn unique_tmp(path: &Path) -> PathBuf {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".shoal-tmp-{}-{}",
        PID.get_or_init(std::process::id),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    PathBuf::from(tmp)
}

/// The temporary file a resumable writer fills: the same name on every restart.
fn resumable_tmp(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".shoal-tmp-resumable");
    path.with_file_name(name)
}

/// Opens `tmp` fresh, or (on resume) cut back to its checkpointed length.
async fn open_resumable(tmp: &Path, resume_at: Option<u64>) -> Result<tokio::fs::File> {
    use tokio::io::AsyncSeekExt;
    if let Some(parent) = tmp.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io(parent))?;
    }
    let Some(len) = resume_at else {
        return tokio::fs::File::create(tmp).await.map_err(io(tmp));
    };
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .open(tmp)
        .await
        .map_err(io(tmp))?;
    file.set_len(len).await.map_err(io(tmp))?;
    file.seek(std::io::SeekFrom::Start(len))
        .await
        .map_err(io(tmp))?;
    Ok(file)
}

impl Buckets {
    pub async fn writer(&self, bucket: &str, key: &str) -> Result<ObjectWriter> {
        match self {
            Buckets::Local(l) => {
                check_key(key)?;
                let path = l.bucket_dir(bucket)?.join(key);
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(io(parent))?;
                }
                let tmp = unique_tmp(&path);
                let file = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
                Ok(ObjectWriter::Local { file, tmp, path })
            }
            Buckets::S3(s) => Ok(ObjectWriter::S3(Box::new(s.writer(bucket, key)?))),
        }
    }

    /// A writer that survives a restart: its bytes go to a temporary file with a fixed
    /// name (in the bucket folder, or under `spill` for S3), and `resume_at` reopens
    /// that file cut back to a checkpointed length.
    pub async fn resumable_writer(
        &self,
        bucket: &str,
        key: &str,
        spill: &Path,
        resume_at: Option<u64>,
    ) -> Result<ObjectWriter> {
        check_key(key)?;
        match self {
            Buckets::Local(l) => {
                let path = l.bucket_dir(bucket)?.join(key);
                let tmp = resumable_tmp(&path);
                if resume_at.is_some() && !tmp.exists() && path.exists() {
                    // A crash between the final rename and the checkpoint that records it.
                    tokio::fs::rename(&path, &tmp).await.map_err(io(&path))?;
                }
                let file = open_resumable(&tmp, resume_at).await?;
                Ok(ObjectWriter::Local { file, tmp, path })
            }
            Buckets::S3(s) => {
                check_bucket(bucket)?;
                let tmp = resumable_tmp(&spill.join(bucket).join(key));
                let file = open_resumable(&tmp, resume_at).await?;
                Ok(ObjectWriter::Spill {
                    file,
                    tmp,
                    s3: Box::new(s.clone()),
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                })
            }
        }
    }

    /// Removes an object; a missing one is not an error.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        match self {
            Buckets::Local(l) => {
                check_key(key)?;
                let path = l.bucket_dir(bucket)?.join(key);
                match tokio::fs::remove_file(&path).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
                    _ => Ok(()),
                }
            }
            Buckets::S3(s) => s.delete(bucket, key).await,
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::Task(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside() {
        // `b/.` was found by the http1 fuzz target: a PUT of it was a 500 (EBUSY).
        for bad in [
            "",
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a\0b",
            "./a",
            "b/.",
            "a/./b",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "a/b.jpg", "dir/sub/file..txt"] {
            assert!(check_key(good).is_ok(), "{good:?}");
        }
    }

    /// Found by the `http1` fuzz target: `GET /b/k/k` with `k` an object was a 500.
    #[test]
    fn a_key_under_an_object_is_no_such_key_and_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/k"), b"x").unwrap();
        let b = LocalBuckets::new(dir.path());
        assert!(
            matches!(b.open("b", "k/k"), Err(Error::NoSuchKey { .. })),
            "{:?}",
            b.open("b", "k/k").err()
        );
        for key in ["k/k", "k/a/b"] {
            let e = b.put("b", key, b"y").unwrap_err();
            assert!(matches!(e, Error::InvalidKey { .. }), "{key}: {e}");
        }
        assert_eq!(b.get("b", "k").unwrap(), b"x");
    }

    /// Two writers whose keys differ only in their extension each get their own
    /// temporary file (one named by `with_extension` was shared).
    #[tokio::test]
    async fn writers_of_similar_keys_do_not_share_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        let b = Buckets::local(dir.path());
        let mut w1 = b.writer("b", "out.json").await.unwrap();
        let mut w2 = b.writer("b", "out.jsonl").await.unwrap();
        w1.write(b"one").await.unwrap();
        w2.write(b"two").await.unwrap();
        w1.finish().await.unwrap();
        w2.finish().await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("b/out.json")).unwrap(),
            b"one"
        );
        assert_eq!(
            std::fs::read(dir.path().join("b/out.jsonl")).unwrap(),
            b"two"
        );
    }

    #[test]
    fn put_get_list() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        let b = LocalBuckets::new(dir.path());
        b.put("b", "p/x.json", b"[1]").unwrap();
        b.put("b", "q.json", b"[2]").unwrap();
        assert_eq!(b.get("b", "p/x.json").unwrap(), b"[1]");
        let keys: Vec<String> = b
            .list("b", "p/")
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["p/x.json"]);
        assert!(matches!(b.get("b", "nope"), Err(Error::NoSuchKey { .. })));
        assert!(matches!(b.get("nob", "x"), Err(Error::NoSuchBucket(_))));
    }

    #[test]
    fn walk_lists_in_s3_key_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        let b = LocalBuckets::new(dir.path());
        // `-` (0x2d) < `/` (0x2f) < `0` (0x30): a folder's keys fall between siblings.
        let mut keys = vec![
            "a",
            "a-b",
            "a.txt",
            "a0",
            "ab/c",
            "a/b/d",
            "a/b-c",
            "a/b/c",
            "a/b0",
            "a/é",
            "a/z",
            "b/x/y/z",
            "b/x-",
            "b/x/",
            "B",
            "~",
            "a/b/c.shoal-tmp-1",
        ];
        keys.retain(|k| !k.ends_with('/'));
        // A file and a folder can't share a name: "a" is a file, so no "a/..." keys
        // go in that bucket; put the folder keys in a second one.
        let (files, nested): (Vec<&str>, Vec<&str>) =
            keys.iter().partition(|k| !k.starts_with("a/"));
        std::fs::create_dir(dir.path().join("c")).unwrap();
        for k in &files {
            b.put("b", k, k.as_bytes()).unwrap();
        }
        for k in &nested {
            b.put("c", k, k.as_bytes()).unwrap();
        }
        b.put("c", "a-b", b"").unwrap();
        b.put("c", "a0", b"").unwrap();
        std::fs::create_dir_all(dir.path().join("c/empty/folder")).unwrap();
        let listed = |bucket: &str, prefix: &str| -> Vec<String> {
            b.walk(bucket, prefix)
                .unwrap()
                .map(|m| m.unwrap().key)
                .collect()
        };
        let expect = |ks: &[&str], prefix: &str| -> Vec<String> {
            let mut v: Vec<String> = ks
                .iter()
                .filter(|k| k.starts_with(prefix) && !k.contains(".shoal-tmp-"))
                .map(|k| k.to_string())
                .collect();
            v.sort();
            v
        };
        let c_keys: Vec<&str> = nested.iter().copied().chain(["a-b", "a0"]).collect();
        assert_eq!(
            listed("c", ""),
            ["a-b", "a/b-c", "a/b/c", "a/b/d", "a/b0", "a/z", "a/é", "a0"]
        );
        for prefix in ["", "a", "a/", "a/b", "a/b/", "a/b/c", "a-", "z", "a/é"] {
            assert_eq!(listed("c", prefix), expect(&c_keys, prefix), "{prefix:?}");
            assert_eq!(listed("b", prefix), expect(&files, prefix), "{prefix:?}");
        }
        assert!(matches!(b.walk("nob", ""), Err(Error::NoSuchBucket(_))));
        let m = b.walk("b", "a.txt").unwrap().next().unwrap().unwrap();
        assert_eq!((m.key.as_str(), m.size), ("a.txt", 5));
    }
}
