//! Object storage: `s3://bucket/prefix` on AWS S3 or any S3-compatible service (SeaweedFS,
//! MinIO, Scaleway, OVH …), for the backup directories, the PITR archive and the monitor's
//! validated store.
//!
//! The features never see HTTP: they name keys and get [`S3Store`]'s few operations — list,
//! head, bounded and streamed reads, create-only writes, multipart uploads whose memory is
//! bounded (for dumps of any size), and the clean-up of uploads a crash left behind.
//! object_store does the requests, signing and retries; the one call it lacks,
//! ListMultipartUploads, is made here with its signer.
//!
//! Where the pieces are: [`S3Url`] (`url.rs`) and [`S3Options`] (`options.rs`) come from the
//! configuration; [`S3Credentials`] (`credentials.rs`) never do — environment or the AWS
//! shared credentials file only; [`S3Store`] (`s3.rs`) talks to the service; [`Upload`] and
//! [`SyncUpload`] (`upload.rs`) stream an object up in parts; [`BlockingStore`] (`blocking.rs`)
//! is the store for synchronous code; [`Lease`] (`lease.rs`) keeps a prefix to one writer at a
//! time across machines.

mod blocking;
mod credentials;
mod errors;
mod lease;
mod options;
mod pending;
mod place;
mod s3;
mod upload;
mod url;

pub use blocking::{BlockingStore, ObjectReader};
pub use credentials::S3Credentials;
pub use errors::AlreadyExists;
pub use lease::{release_leases, Lease, LeaseTiming, LEASE_TTL};
pub use options::S3Options;
pub use place::S3Place;
pub use s3::{ObjectInfo, PendingUpload, Replaced, S3Store};
pub use upload::{
    stop_uploads, wait_for_aborts, SyncUpload, Upload, DEFAULT_PART_SIZE, MIN_PART_SIZE,
};
pub use url::S3Url;
