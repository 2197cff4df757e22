//! The local Lambda environment: the function registry (`shoal.toml`), a pool of each
//! function's processes served the Lambda Runtime API, and the S3 endpoint those
//! processes reach the `--buckets` folders through. Both servers speak HTTP/1.1 on
//! `http1`, a small connection type written for them (see ARCHITECTURE.md for why).

mod http1;
pub mod pool;
pub mod registry;
pub mod s3serve;

pub use http1::Limits;
pub use pool::{Pool, PoolStats, Reply};
pub use registry::{ConfigError, FunctionConfig, FunctionDef, Registry};
