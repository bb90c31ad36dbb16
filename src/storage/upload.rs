//! [`Upload`]: one object written as a stream, in parts of a multipart upload, with memory
//! bounded whatever its size; [`SyncUpload`], the same behind `std::io::Write` for the
//! synchronous writers of the backup pipeline (zstd's encoder, a hashing writer).
//!
//! Memory: the part being filled, plus at most two parts on their way (each sent by a task of
//! its own, so they progress while the caller compresses the next one): three parts in all,
//! 24 MiB at the default 8 MiB. An upload dropped without `finish` or `abort` (an error, a
//! panic, a cancelled task) is aborted in the background, so that the service does not keep
//! its parts; one that a crash left anyway is found by `S3Store::pending_uploads`.

use std::collections::VecDeque;
use std::io;

use anyhow::{anyhow, Result};
use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::task::JoinHandle;

use super::errors::store_error;
use super::s3::{info, ObjectInfo, REQUEST_TIMEOUT};

/// 8 MiB.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// 5 MiB, the least S3 accepts for every part but the last.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts sent at once; the one being filled comes on top.
const IN_FLIGHT: usize = 2;

/// A multipart upload in progress. Write with [`Upload::write`], then [`Upload::finish`] (the
/// object appears, whole) or [`Upload::abort`] (nothing appears).
pub struct Upload {
    /// `None` once finished or aborted: Drop has nothing to do.
    state: Option<State>,
}

struct State {
    store: AmazonS3,
    path: Path,
    shown: String,
    key: String,
    upload_id: String,
    part_size: usize,
    buf: Vec<u8>,
    /// Part number (from 0), bytes, the task sending it.
    in_flight: VecDeque<(usize, usize, JoinHandle<Result<PartId>>)>,
    done: Vec<PartId>,
    written: u64,
    /// A part failed: the upload can only be aborted.
    failed: bool,
    peak_buffered: usize,
    runtime: Handle,
    _live: Live,
}

impl Upload {
    pub(crate) fn new(
        store: AmazonS3,
        path: Path,
        shown: String,
        key: String,
        upload_id: String,
        part_size: usize,
    ) -> Upload {
        Upload {
            state: Some(State {
                store,
                path,
                shown,
                key,
                upload_id,
                part_size: part_size.max(MIN_PART_SIZE),
                buf: Vec::new(),
                in_flight: VecDeque::new(),
                done: Vec::new(),
                written: 0,
                failed: false,
                peak_buffered: 0,
                runtime: Handle::current(),
                _live: Live::new(),
            }),
        }
    }

    /// The full key being written.
    pub fn key(&self) -> &str {
        self.state.as_ref().map_or("", |s| s.key.as_str())
    }

    pub fn part_size(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.part_size)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.written)
    }

    /// The most bytes this upload has held at once: the part being filled plus the parts on
    /// their way. Never more than three parts.
    pub fn peak_buffered(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.peak_buffered)
    }

    /// Appends `buf`; a part is sent each time one is full, after waiting for an earlier one
    /// when two are already on their way.
    pub async fn write(&mut self, mut buf: &[u8]) -> Result<()> {
        let state = self.live()?;
        while !buf.is_empty() {
            let n = state.fill(buf);
            buf = &buf[n..];
            if state.buf.len() == state.part_size {
                state.send_part().await?;
            }
        }
        Ok(())
    }

    /// Sends the last part, completes the upload and returns the object as the service now
    /// shows it. An upload with nothing written makes an empty object. On an error the upload
    /// is aborted.
    pub async fn finish(mut self) -> Result<ObjectInfo> {
        let mut state = self
            .state
            .take()
            .ok_or_else(|| anyhow!("upload already ended"))?;
        match state.complete().await {
            Ok(info) => Ok(info),
            Err(e) => {
                state.abort().await.ok();
                Err(e)
            }
        }
    }

    /// Lets the parts on their way end, then aborts the upload: nothing appears under the key.
    pub async fn abort(mut self) -> Result<()> {
        match self.state.take() {
            Some(mut state) => state.abort().await,
            None => Ok(()),
        }
    }

    fn live(&mut self) -> Result<&mut State> {
        let state = self
            .state
            .as_mut()
            .ok_or_else(|| anyhow!("upload already ended"))?;
        if STOPPING.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(anyhow!(
                "{}: upload: stopped (the run was told to stop)",
                state.shown
            ));
        }
        if state.failed {
            return Err(anyhow!(
                "{}: upload: an earlier part failed; the upload can only be aborted",
                state.shown
            ));
        }
        Ok(state)
    }

    /// For [`SyncUpload`]: copies what fits in the part being filled, without waiting.
    fn fill(&mut self, buf: &[u8]) -> io::Result<usize> {
        let state = self.live().map_err(|e| io::Error::other(e.to_string()))?;
        Ok(state.fill(buf))
    }

    fn part_full(&self) -> bool {
        self.state
            .as_ref()
            .is_some_and(|s| s.buf.len() == s.part_size)
    }

    async fn send_full_part(&mut self) -> Result<()> {
        self.live()?.send_part().await
    }

    fn runtime(&self) -> Option<Handle> {
        self.state.as_ref().map(|s| s.runtime.clone())
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            Some(s) => f
                .debug_struct("Upload")
                .field("url", &s.shown)
                .field("upload_id", &s.upload_id)
                .field("part_size", &s.part_size)
                .field("written", &s.written)
                .field("parts_sent", &(s.done.len() + s.in_flight.len()))
                .finish(),
            None => f.write_str("Upload(ended)"),
        }
    }
}

impl Drop for Upload {
    /// Neither finished nor aborted: the upload is aborted by a background task, once the
    /// parts on their way have ended (see `State::abort`); best effort, as a runtime shutting
    /// down may not run it.
    fn drop(&mut self) {
        let Some(mut state) = self.state.take() else {
            return;
        };
        let runtime = state.runtime.clone();
        runtime.spawn(async move {
            state.abort().await.ok();
        });
    }
}

/// Uploads begun and not yet ended (completed, aborted, or aborted in the background after
/// being dropped unfinished): each upload's state holds one [`Live`].
static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts an upload in [`LIVE`] for as long as its state exists.
struct Live;

impl Live {
    fn new() -> Live {
        LIVE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Live
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Set by [`stop_uploads`]: every upload refuses more data from then on.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// After a stop (Ctrl-C, SIGTERM): from now on every upload refuses more data, so that code
/// still writing one on a thread of its own (a promotion, a compressor) fails at its next
/// write and drops it, and the upload is aborted. An upload already completing is let end.
pub fn stop_uploads() {
    STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// After a stop (Ctrl-C, SIGTERM) has dropped an operation: waits, at most `limit`, for the
/// uploads it began to end — those its dropped futures or threads left are aborted in the
/// background, so that none is left half-sent in the bucket when the process ends (an upload
/// owned by a thread still draining its input is waited for too). Returns how many had not
/// ended at the limit.
pub async fn wait_for_aborts(limit: std::time::Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n = LIVE.load(std::sync::atomic::Ordering::SeqCst);
        if n == 0 || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl State {
    fn fill(&mut self, buf: &[u8]) -> usize {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.part_size);
        }
        let n = buf.len().min(self.part_size - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        self.written += n as u64;
        self.note_memory();
        n
    }

    fn note_memory(&mut self) {
        let held = self.buf.capacity() + self.in_flight.iter().map(|p| p.1).sum::<usize>();
        self.peak_buffered = self.peak_buffered.max(held);
    }

    /// Sends the part being filled, as a task of its own.
    async fn send_part(&mut self) -> Result<()> {
        while self.in_flight.len() >= IN_FLIGHT {
            self.wait_oldest().await?;
        }
        let part = std::mem::take(&mut self.buf);
        let number = self.done.len() + self.in_flight.len();
        let size = part.len();
        let store = self.store.clone();
        let path = self.path.clone();
        let id = self.upload_id.clone();
        let shown = self.shown.clone();
        let task = self.runtime.spawn(async move {
            let op = format!("upload part {}", number + 1);
            let put = store.put_part(&path, &id, number, Bytes::from(part).into());
            match tokio::time::timeout(REQUEST_TIMEOUT, put).await {
                Ok(Ok(part)) => Ok(part),
                Ok(Err(e)) => Err(store_error(&shown, &op, &e)),
                Err(_) => Err(anyhow!(
                    "{shown}: {op}: not sent within {} s",
                    REQUEST_TIMEOUT.as_secs()
                )),
            }
        });
        self.in_flight.push_back((number, size, task));
        self.note_memory();
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<()> {
        let Some((number, _, task)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let outcome = task
            .await
            .unwrap_or_else(|e| Err(anyhow!("{}: upload part {}: {e}", self.shown, number + 1)));
        match outcome {
            Ok(part) => {
                self.done.push(part);
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    async fn complete(&mut self) -> Result<ObjectInfo> {
        if self.failed {
            return Err(anyhow!(
                "{}: upload: an earlier part failed; the upload can only be aborted",
                self.shown
            ));
        }
        if !self.buf.is_empty() {
            self.send_part().await?;
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest().await?;
        }
        // With no part at all, object_store sends one empty part: an empty object.
        let parts = std::mem::take(&mut self.done);
        let complete = self
            .store
            .complete_multipart(&self.path, &self.upload_id, parts);
        match tokio::time::timeout(REQUEST_TIMEOUT, complete).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(store_error(&self.shown, "complete upload", &e)),
            Err(_) => {
                return Err(anyhow!(
                    "{}: complete upload: no answer within {} s",
                    self.shown,
                    REQUEST_TIMEOUT.as_secs()
                ))
            }
        }
        // The object as stored: its size checked against what was written.
        let meta = tokio::time::timeout(REQUEST_TIMEOUT, self.store.head(&self.path))
            .await
            .map_err(|_| anyhow!("{}: head: no answer", self.shown))?
            .map_err(|e| store_error(&self.shown, "head after upload", &e))?;
        if meta.size != self.written {
            return Err(anyhow!(
                "{}: upload: the service stored {} bytes, {} were written",
                self.shown,
                meta.size,
                self.written
            ));
        }
        Ok(info(meta))
    }

    /// Waits for the parts on their way, then aborts. A part request cancelled half-way may
    /// still be stored by the service after the abort, and then kept for good (S3 says to
    /// abort again); a finished one is deleted with the upload. Each wait is bounded by the
    /// part's own timeout.
    async fn abort(&mut self) -> Result<()> {
        for (_, _, task) in self.in_flight.drain(..) {
            let _ = task.await;
        }
        let abort = self.store.abort_multipart(&self.path, &self.upload_id);
        match tokio::time::timeout(REQUEST_TIMEOUT, abort).await {
            Ok(r) => r.map_err(|e| store_error(&self.shown, "abort upload", &e)),
            Err(_) => Err(anyhow!("{}: abort upload: no answer", self.shown)),
        }
    }
}

/// `std::io::Write` over an [`Upload`], for code that writes synchronously from inside
/// tokio's multi-thread runtime (a zstd encoder, a hashing writer). Bytes are copied into the
/// part being filled; when it is full, the writing thread waits for the upload
/// (`block_in_place`, so the runtime's other tasks go on) — once per part, not per write.
/// On a current-thread runtime, where that wait is impossible, writes fail with an error
/// saying so. [`SyncUpload::finish`] or [`SyncUpload::abort`] end it; dropped, it aborts.
#[derive(Debug)]
pub struct SyncUpload {
    upload: Upload,
}

impl SyncUpload {
    pub fn new(upload: Upload) -> Self {
        SyncUpload { upload }
    }

    pub fn key(&self) -> &str {
        self.upload.key()
    }

    pub fn written(&self) -> u64 {
        self.upload.written()
    }

    /// See [`Upload::peak_buffered`].
    pub fn peak_buffered(&self) -> usize {
        self.upload.peak_buffered()
    }

    /// Completes the upload (see [`Upload::finish`]).
    pub fn finish(self) -> Result<ObjectInfo> {
        let handle = self.handle().map_err(|e| anyhow!("{e}"))?;
        tokio::task::block_in_place(|| handle.block_on(self.upload.finish()))
    }

    /// Aborts the upload (see [`Upload::abort`]).
    pub fn abort(self) -> Result<()> {
        let handle = self.handle().map_err(|e| anyhow!("{e}"))?;
        tokio::task::block_in_place(|| handle.block_on(self.upload.abort()))
    }

    /// The runtime to wait on, when waiting is possible from this thread.
    fn handle(&self) -> io::Result<Handle> {
        if let Ok(current) = Handle::try_current() {
            if current.runtime_flavor() == RuntimeFlavor::CurrentThread {
                return Err(io::Error::other(format!(
                    "{}: a synchronous upload needs tokio's multi-thread runtime",
                    self.upload.state.as_ref().map_or("", |s| s.shown.as_str())
                )));
            }
        }
        self.upload
            .runtime()
            .ok_or_else(|| io::Error::other("upload already ended"))
    }
}

impl io::Write for SyncUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.upload.part_full() {
            self.send_full_part()?;
        }
        let n = self.upload.fill(buf)?;
        if self.upload.part_full() {
            self.send_full_part()?;
        }
        Ok(n)
    }

    /// Nothing to do: a part is sent when full, the last one by `finish`.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SyncUpload {
    fn send_full_part(&mut self) -> io::Result<()> {
        let handle = self.handle()?;
        tokio::task::block_in_place(|| handle.block_on(self.upload.send_full_part()))
            .map_err(|e| io::Error::other(e.to_string()))
    }
}
