//! How far an ItemReader has got: bytes read out of the bytes it knows of, keys
//! listed. The reader's thread writes it; the map run, the API and the progress bar
//! read it while items still arrive.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Shared between the reader's thread and whoever shows progress.
#[derive(Debug, Default)]
pub struct ReadProgress {
    bytes_read: AtomicU64,
    /// The sizes of the objects known so far.
    bytes_total: AtomicU64,
    /// Every object to read is known: `bytes_total` will not grow.
    total_final: AtomicBool,
    /// The reader opens objects (a listing alone reads no object bytes).
    reads_objects: AtomicBool,
    /// A listing is (or was) walked.
    listing: AtomicBool,
    keys_listed: AtomicU64,
    done: AtomicBool,
}

/// A moment of [`ReadProgress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSnapshot {
    /// Object bytes read so far; `None` when the reader reads no objects (a listing).
    pub bytes: Option<Bytes>,
    /// Keys listed so far, when the items come from a listing.
    pub keys_listed: Option<u64>,
    /// The reader has stopped: at the end, at MaxItems, or on a failure.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes {
    pub read: u64,
    /// The sizes of the objects known so far (from their metadata, or a manifest).
    pub total: u64,
    /// `total` is the sum of every object the reader will read. False while a
    /// listing or a manifest of unknown sizes is still being read.
    pub total_known: bool,
}

impl ReadProgress {
    pub fn snapshot(&self) -> ReadSnapshot {
        let done = self.done.load(Ordering::Acquire);
        ReadSnapshot {
            bytes: self.reads_objects.load(Ordering::Acquire).then(|| Bytes {
                read: self.bytes_read.load(Ordering::Acquire),
                total: self.bytes_total.load(Ordering::Acquire),
                total_known: done || self.total_final.load(Ordering::Acquire),
            }),
            keys_listed: self
                .listing
                .load(Ordering::Acquire)
                .then(|| self.keys_listed.load(Ordering::Acquire)),
            done,
        }
    }

    /// Objects of `size` bytes in all will be read; `all` when nothing more will come.
    pub(crate) fn add_total(&self, size: u64, all: bool) {
        self.reads_objects.store(true, Ordering::Release);
        self.bytes_total.fetch_add(size, Ordering::AcqRel);
        if all {
            self.total_final.store(true, Ordering::Release);
        }
    }

    pub(crate) fn add_read(&self, n: u64) {
        self.bytes_read.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn listed(&self) {
        self.listing.store(true, Ordering::Release);
        self.keys_listed.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn start_listing(&self) {
        self.listing.store(true, Ordering::Release);
    }

    pub(crate) fn finish(&self) {
        self.done.store(true, Ordering::Release);
    }
}

/// Counts the bytes that pass through a reader into its [`ReadProgress`].
pub(crate) struct Counted<R> {
    pub(crate) inner: R,
    pub(crate) progress: Arc<ReadProgress>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_read(n as u64);
        Ok(n)
    }
}
