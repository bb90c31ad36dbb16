//! One writer per bucket prefix, across machines: a lease object (`<prefix>/.<name>.lease`)
//! written with a create-only put, kept alive by conditional replaces (`If-Match` on its
//! ETag) and removed when the writer ends.
//!
//! The local lock files of the state directory only see writers of one machine; two hosts
//! configured with the same `s3://bucket/prefix` would otherwise prune, clean up or abort
//! each other's uploads. The lease names its holder (host, pid, command, since when):
//! - a second writer is refused with that name, or waits for it with `--wait`;
//! - a holder that stops renewing (killed, machine lost) is taken over once the object has
//!   not changed for [`LEASE_TTL`], by the service's clock of its last write, or at once by
//!   a run on the same host when the holder's pid is gone;
//! - a takeover is itself a conditional replace: of two writers that find a stale lease,
//!   one wins;
//! - a writer whose lease was taken over (or could not be renewed for [`LEASE_TTL`]) learns
//!   it at [`Lease::check`], which the features call before each step that changes what
//!   is kept (a manifest, a record, a deletion).
//!
//! The renewal runs on a thread of its own, with its own connection, so that it goes on
//! whatever the command's runtime is busy with. A stop (Ctrl-C, SIGTERM) releases every
//! lease before the process exits ([`release_leases`]).

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::errors::AlreadyExists;
use super::s3::Replaced;
use super::{S3Credentials, S3Place, S3Store};

/// A lease not renewed for this long is stale: its holder is gone.
pub const LEASE_TTL: Duration = Duration::from_secs(120);

/// How long a lease lives unrenewed, and how often its holder renews it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub ttl: Duration,
    pub renew_every: Duration,
}

impl Default for LeaseTiming {
    /// [`LEASE_TTL`], renewed every 30 s: a holder misses three renewals before it is stale.
    fn default() -> LeaseTiming {
        LeaseTiming {
            ttl: LEASE_TTL,
            renew_every: Duration::from_secs(30),
        }
    }
}
/// How often a writer told to `--wait` looks again.
const WAIT_STEP: Duration = Duration::from_secs(2);
/// The longest a dropped lease waits for its release.
const RELEASE_WAIT: Duration = Duration::from_secs(10);
/// The largest lease object read (a lease is a few hundred bytes).
const LEASE_MAX: u64 = 64 * 1024;

/// What a lease object holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    host: String,
    pid: u32,
    /// The command, as messages name it (`backup of target mairie`).
    what: String,
    since: DateTime<Utc>,
    /// Unique to this holding: its body, and so its ETag, is never another holding's.
    token: String,
}

impl Holder {
    fn ours(what: &str) -> Holder {
        Holder {
            host: host_name(),
            pid: std::process::id(),
            what: what.to_string(),
            since: Utc::now(),
            token: token(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} (pid {} on {} since {})",
            self.what,
            self.pid,
            self.host,
            self.since.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }

    fn body(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// A lease held on a prefix; released when dropped.
pub struct Lease {
    shown: String,
    ttl: Duration,
    lost: Arc<AtomicBool>,
    stop: Option<mpsc::Sender<()>>,
    done: Arc<Done>,
    id: u64,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("shown", &self.shown).finish()
    }
}

impl Lease {
    /// Takes the lease `name` of `place` for `what` (a command, as messages name it). Held
    /// by another live writer: an error naming it, or with `wait`, waits until it is free.
    /// Blocks the calling thread: from async code, call it on a blocking thread.
    pub fn acquire(place: &S3Place, name: &str, what: &str, wait: bool) -> Result<Lease> {
        Lease::acquire_with(place, name, what, wait, LeaseTiming::default(), None)
    }

    /// [`Lease::acquire`] with other timings, and other credentials than the environment's.
    pub fn acquire_with(
        place: &S3Place,
        name: &str,
        what: &str,
        wait: bool,
        timing: LeaseTiming,
        credentials: Option<&S3Credentials>,
    ) -> Result<Lease> {
        let credentials = credentials.cloned();
        let key = place.url.key(&format!(".{name}.lease"));
        let shown = place.url.display(&key);
        let lost = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let done = Arc::new(Done::default());
        let holder = Holder::ours(what);
        let thread = {
            let (place, key, shown, lost, done) = (
                place.clone(),
                key.clone(),
                shown.clone(),
                lost.clone(),
                done.clone(),
            );
            std::thread::Builder::new()
                .name("lease".into())
                .spawn(move || {
                    hold(
                        Holding {
                            place,
                            key,
                            shown,
                            holder,
                            wait,
                            timing,
                            credentials,
                        },
                        ready_tx,
                        stop_rx,
                        lost,
                    );
                    done.set();
                })
                .context("starting the lease's thread")?
        };
        let id = next_id();
        let lease = Lease {
            shown: shown.clone(),
            ttl: timing.ttl,
            lost,
            stop: Some(stop_tx),
            done: done.clone(),
            id,
        };
        // Not joined: a renewal in flight may take a request's whole time; the thread
        // ends on its own once told to stop.
        drop(thread);
        match ready_rx.recv() {
            Ok(Ok(())) => {
                live().lock().unwrap_or_else(|e| e.into_inner()).push(Live {
                    id,
                    stop: lease.stopper(),
                    done,
                });
                Ok(lease)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(anyhow!("{shown}: the lease's thread ended")),
        }
    }

    /// An error when the lease is no longer ours (taken over by another writer, or not
    /// renewed for [`LEASE_TTL`]): the caller stops before changing what is kept.
    pub fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            bail!(
                "{}: this run's lease on the prefix was lost (taken over by another writer, or \
                 not renewed for {} s): stopped before changing anything more",
                self.shown,
                self.ttl.as_secs()
            );
        }
        Ok(())
    }

    fn stopper(&self) -> mpsc::Sender<()> {
        self.stop.clone().expect("a held lease has its sender")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        live()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|l| l.id != self.id);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Released in a moment, unless the service does not answer: then the next writer
        // takes the lease over once stale.
        self.done.wait(RELEASE_WAIT);
    }
}

/// After a stop (Ctrl-C, SIGTERM): tells every lease's thread to release it, and waits for
/// them for at most `limit` in all.
pub fn release_leases(limit: Duration) {
    let held = std::mem::take(&mut *live().lock().unwrap_or_else(|e| e.into_inner()));
    for h in &held {
        let _ = h.stop.send(());
    }
    let deadline = Instant::now() + limit;
    for h in held {
        h.done
            .wait(deadline.saturating_duration_since(Instant::now()));
    }
}

/// A held lease's thread, as a stop reaches it.
struct Live {
    id: u64,
    stop: mpsc::Sender<()>,
    done: Arc<Done>,
}

/// Set when a lease's thread has ended (its lease released, or lost).
#[derive(Default)]
struct Done {
    ended: Mutex<bool>,
    cv: Condvar,
}

impl Done {
    fn set(&self) {
        *self.ended.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Waits until set, for at most `limit`.
    fn wait(&self, limit: Duration) {
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.cv.wait_timeout_while(ended, limit, |e| !*e);
    }
}

/// The leases held.
fn live() -> &'static Mutex<Vec<Live>> {
    static LIVE: OnceLock<Mutex<Vec<Live>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(Vec::new()))
}

fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// What a lease's thread holds.
struct Holding {
    place: S3Place,
    key: String,
    shown: String,
    holder: Holder,
    wait: bool,
    timing: LeaseTiming,
    credentials: Option<S3Credentials>,
}

/// The lease's thread: takes it, says so on `ready`, renews it until told to stop on `stop`
/// (or its sender is dropped), then removes it if it is still ours.
fn hold(
    h: Holding,
    ready: mpsc::Sender<Result<()>>,
    stop: mpsc::Receiver<()>,
    lost: Arc<AtomicBool>,
) {
    let shown = &h.shown;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(anyhow!("{shown}: starting the lease's runtime: {e}")));
            return;
        }
    };
    let opened = rt.block_on(async {
        match &h.credentials {
            Some(c) => S3Store::open_with(&h.place.url, &h.place.options, c).await,
            None => h.place.open().await,
        }
    });
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut etag = match rt.block_on(take(&store, &h, &stop)) {
        Ok(Some(etag)) => etag,
        Ok(None) => return, // told to stop while waiting
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(())).is_err() {
        // Nobody waits for it any more: give it back.
        let _ = rt.block_on(release(&store, &h.key, &etag));
        return;
    }
    let mut renewed = Instant::now();
    loop {
        match stop.recv_timeout(h.timing.renew_every) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        match rt.block_on(store.replace(&h.key, h.holder.body(), &etag)) {
            Ok(Replaced::Done(Some(e))) => {
                etag = e;
                renewed = Instant::now();
            }
            Ok(Replaced::Done(None)) | Ok(Replaced::Changed) => {
                // Taken over (or the service stopped giving ETags): never ours again.
                lost.store(true, Ordering::SeqCst);
                break;
            }
            Err(_) => {
                // Another writer may take it over once it is stale: stop before then.
                if renewed.elapsed() + h.timing.renew_every >= h.timing.ttl {
                    lost.store(true, Ordering::SeqCst);
                }
            }
        }
    }
    if !lost.load(Ordering::SeqCst) {
        let _ = rt.block_on(release(&store, &h.key, &etag));
    }
}

/// Whether a lease found in place may be taken over: not renewed for `ttl` (by the
/// service's clock of its last write), or held by a process of this host that is gone.
fn stale(age: Duration, ttl: Duration, current: Option<&Holder>, host: &str) -> bool {
    age >= ttl || current.is_some_and(|c| c.host == host && !pid_alive(c.pid))
}

/// Takes the lease: created if absent, taken over if stale, else refused (or waited for).
/// `None`: told to stop while waiting.
async fn take(store: &S3Store, h: &Holding, stop: &mpsc::Receiver<()>) -> Result<Option<String>> {
    let (key, shown) = (h.key.as_str(), h.shown.as_str());
    let no_etag =
        || anyhow!("{shown}: the service gave no ETag for the lease: it cannot be renewed safely");
    loop {
        match store.create(key, h.holder.body()).await {
            Ok(Some(etag)) => return Ok(Some(etag)),
            Ok(None) => return Err(no_etag()),
            Err(e) if e.downcast_ref::<AlreadyExists>().is_none() => return Err(e),
            Err(_) => {}
        }
        // A lease whose body cannot be read (a damaged object) still has an age and an
        // ETag: it is judged by them, and taken over once stale rather than never.
        let (current, info, unreadable) = match store.get_small(key, LEASE_MAX).await {
            Ok(Some((bytes, info))) => (serde_json::from_slice::<Holder>(&bytes).ok(), info, None),
            Ok(None) => continue, // released meanwhile
            Err(e) => match store.head(key).await? {
                Some(info) => (None, info, Some(format!("{e:#}"))),
                None => continue,
            },
        };
        let age = Utc::now()
            .signed_duration_since(info.modified)
            .to_std()
            .unwrap_or_default();
        if stale(age, h.timing.ttl, current.as_ref(), &h.holder.host) {
            let etag = info.etag.as_deref().ok_or_else(no_etag)?;
            match store.replace(key, h.holder.body(), etag).await? {
                Replaced::Done(Some(etag)) => return Ok(Some(etag)),
                Replaced::Done(None) => return Err(no_etag()),
                Replaced::Changed => continue, // another writer took it first
            }
        }
        let who = match (current, unreadable) {
            (Some(c), _) => c.describe(),
            (None, Some(e)) => format!("a writer whose lease cannot be read ({e})"),
            (None, None) => "a writer that left an unreadable lease".to_string(),
        };
        if !h.wait {
            bail!(
                "{shown}: this prefix is in use by {who}; one writer at a time (use --wait to \
                 wait for it; a lease not renewed for {} s is taken over)",
                h.timing.ttl.as_secs()
            );
        }
        match stop.recv_timeout(WAIT_STEP) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return Ok(None),
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Removes the lease if it is still this holder's (another may have taken it over).
/// Known by the ETag of its last write: no need to read it back.
async fn release(store: &S3Store, key: &str, etag: &str) -> Result<()> {
    if let Some(info) = store.head(key).await? {
        if info.etag.as_deref() == Some(etag) {
            store.delete(key).await?;
        }
    }
    Ok(())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Whether a process `pid` runs on this machine.
fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// 16 random bytes, in hex.
fn token() -> String {
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let now = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        b[..8].copy_from_slice(&now.to_le_bytes());
        b[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(host: &str, pid: u32) -> Holder {
        Holder {
            host: host.into(),
            pid,
            what: "backup of target mairie".into(),
            since: Utc::now(),
            token: token(),
        }
    }

    #[test]
    fn stale_when_unrenewed_for_the_ttl_or_its_process_here_is_gone() {
        let ttl = Duration::from_secs(120);
        let young = Duration::from_secs(5);
        let here = host_name();
        // A live holder elsewhere: only its age decides.
        assert!(!stale(young, ttl, Some(&holder("db2", 1)), &here));
        assert!(stale(ttl, ttl, Some(&holder("db2", 1)), &here));
        // Here: this process is alive, pid 0x3fffff (above pid_max's default) is not.
        assert!(!stale(
            young,
            ttl,
            Some(&holder(&here, std::process::id())),
            &here
        ));
        assert!(stale(young, ttl, Some(&holder(&here, 0x3f_ffff)), &here));
        // An unreadable lease: its age only.
        assert!(!stale(young, ttl, None, &here));
        assert!(stale(Duration::from_secs(121), ttl, None, &here));
    }

    #[test]
    fn a_holder_is_named_and_its_tokens_differ() {
        let h = holder("db2", 4242);
        let d = h.describe();
        assert!(
            d.starts_with("backup of target mairie (pid 4242 on db2 since "),
            "{d}"
        );
        let back: Holder = serde_json::from_slice(&h.body()).unwrap();
        assert_eq!(back.token, h.token);
        assert_eq!(h.token.len(), 32);
        assert_ne!(token(), token());
    }
}
