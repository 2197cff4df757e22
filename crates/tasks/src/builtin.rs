//! Functions shipped inside shoal and run in-process, behind one trait, so that a
//! heavy one (the demo's `resize`) lives in its own crate and joins only the builds
//! that ask for it.

use bytes::Bytes;
use futures::future::BoxFuture;
use shoal_buckets::Buckets;
use shoal_lambda::Reply;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A function run in shoal's own process.
pub trait Builtin: Send + Sync {
    /// Answers one invocation. `buckets` are the run's `--buckets` or S3 endpoint, for
    /// builtins that read or write objects.
    fn invoke<'a>(
        &'a self,
        payload: Bytes,
        buckets: Option<&'a Arc<Buckets>>,
    ) -> BoxFuture<'a, Reply>;
}

/// Builtins by the name a `shoal.toml` gives in `builtin = "..."`.
pub type Builtins = BTreeMap<String, Arc<dyn Builtin>>;

/// Returns its payload: for tests, and as the cheapest possible function.
struct Identity;

impl Builtin for Identity {
    fn invoke<'a>(&'a self, payload: Bytes, _: Option<&'a Arc<Buckets>>) -> BoxFuture<'a, Reply> {
        Box::pin(async move { Reply::Ok(payload) })
    }
}

/// Returns `null`.
struct Noop;

impl Builtin for Noop {
    fn invoke<'a>(&'a self, _: Bytes, _: Option<&'a Arc<Buckets>>) -> BoxFuture<'a, Reply> {
        Box::pin(async { Reply::Ok(Bytes::from_static(b"null")) })
    }
}

/// The builtins every build has: `identity` and `noop`.
pub fn standard() -> Builtins {
    let mut b: Builtins = BTreeMap::new();
    b.insert("identity".into(), Arc::new(Identity));
    b.insert("noop".into(), Arc::new(Noop));
    b
}
