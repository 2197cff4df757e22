//! The store's calls from async code. `Store` is synchronous (SQLite, and a flush waits
//! for the writer thread to commit), so each call runs on tokio's blocking pool: a slow
//! disk or a SQLite lock held by another process never stalls a runtime thread, and the
//! timers and calls of other executions on it go on.

use shoal_store::Store;
use std::sync::Arc;

/// A store whose calls are awaited. Cheap to clone.
#[derive(Clone)]
pub struct AsyncStore(Arc<dyn Store>);

impl AsyncStore {
    pub fn new(db: Arc<dyn Store>) -> AsyncStore {
        AsyncStore(db)
    }

    /// The store itself, for calls that only queue work (`append`, `put_map_run`).
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.0
    }

    /// Runs `f` on the blocking pool. A panic in it goes on in the caller, as it would
    /// have in a direct call.
    pub async fn run<T, E>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<shoal_store::Error> + Send + 'static,
    {
        let db = self.0.clone();
        match tokio::task::spawn_blocking(move || f(&*db)).await {
            Ok(r) => r,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => Err(shoal_store::Error::Sqlite {
                    path: "the state store".into(),
                    message: "its call was cancelled: the runtime is shutting down".into(),
                }
                .into()),
            },
        }
    }

    /// Waits until everything sent so far is committed, off the runtime's threads.
    pub async fn flush(&self) -> shoal_store::Result<()> {
        self.run(|db| db.flush()).await
    }
}
