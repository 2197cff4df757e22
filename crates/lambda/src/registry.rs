//! The function registry: the `[functions.<name>]` tables of a `shoal.toml`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One `[functions.<name>]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    /// The process to start: it speaks the Lambda Runtime API.
    #[serde(default)]
    pub command: Vec<String>,
    /// Or an in-process function shipped with shoal.
    pub builtin: Option<String>,
    /// Relative to the config file.
    #[serde(default)]
    pub cwd: PathBuf,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Lambda's default is 3 seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    #[serde(default = "default_memory")]
    pub memory_mb: u64,
    /// The most processes at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_timeout() -> f64 {
    3.0
}

/// The longest `timeout_seconds`: Step Functions' own limit for a Task, which keeps
/// every deadline shoal computes from it representable.
pub const MAX_TIMEOUT_SECONDS: f64 = 99_999_999.0;
fn default_memory() -> u64 {
    128
}
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    functions: BTreeMap<String, FunctionConfig>,
    #[serde(default)]
    services: BTreeMap<String, ServiceConfig>,
}

/// `[services.<name>]`: where an AWS service's calls go (moto, LocalStack, ...).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceConfig {
    endpoint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// How a registered function runs.
#[derive(Debug, Clone)]
pub enum FunctionDef {
    /// Processes that speak the Lambda Runtime API.
    Process(FunctionConfig),
    /// An in-process function, by its builtin name; the `tasks` crate resolves it.
    Builtin(String),
}

/// Every function a `shoal.toml` registers, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// The file it came from, for error messages.
    pub path: PathBuf,
    pub functions: BTreeMap<String, FunctionDef>,
    /// An endpoint URL per AWS service key (`dynamodb`, `sqs`, `s3`, ...).
    pub services: BTreeMap<String, String>,
}

impl Registry {
    /// Reads a `shoal.toml`: names checked, working folders and relative programs
    /// resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Registry, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let file: ConfigFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        // `shoal.toml` alone has an empty parent, which as a working folder fails to spawn.
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut functions = BTreeMap::new();
        for (name, mut cfg) in file.functions {
            let ok_name = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok_name {
                return Err(invalid(format!(
                    "functions.{name}: a function name is 1 to 64 letters, digits, '-' or '_'"
                )));
            }
            let t = cfg.timeout_seconds;
            // Written so that NaN fails too.
            if !(t > 0.0 && t <= MAX_TIMEOUT_SECONDS) {
                return Err(invalid(format!(
                    "functions.{name}.timeout_seconds: must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECONDS}, got {t}"
                )));
            }
            let f = match (cfg.builtin.take(), cfg.command.is_empty()) {
                (Some(b), true) => FunctionDef::Builtin(b),
                (None, false) => {
                    let cwd = base.join(&cfg.cwd);
                    cfg.cwd = std::path::absolute(&cwd).unwrap_or(cwd);
                    // A relative program path ("./bootstrap") is relative to cwd, as in Lambda.
                    if cfg.command[0].contains('/') && Path::new(&cfg.command[0]).is_relative() {
                        cfg.command[0] =
                            cfg.cwd.join(&cfg.command[0]).to_string_lossy().into_owned();
                    }
                    FunctionDef::Process(cfg)
                }
                _ => {
                    return Err(invalid(format!(
                        "functions.{name}: give exactly one of command or builtin"
                    )))
                }
            };
            functions.insert(name, f);
        }
        let mut services = BTreeMap::new();
        for (name, s) in file.services {
            if !(s.endpoint.starts_with("http://") || s.endpoint.starts_with("https://")) {
                return Err(invalid(format!(
                    "services.{name}.endpoint: an endpoint is an http:// or https:// URL, got {:?}",
                    s.endpoint
                )));
            }
            services.insert(name, s.endpoint);
        }
        Ok(Registry {
            path: path.to_path_buf(),
            functions,
            services,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(body: &str) -> Result<Registry, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.toml");
        std::fs::write(&path, body).unwrap();
        Registry::load(&path)
    }

    #[test]
    fn timeouts_that_are_not_a_number_of_seconds_are_refused() {
        for t in ["inf", "-inf", "nan", "-1", "0", "1e300"] {
            let err = load(&format!(
                "[functions.f]\ncommand = [\"x\"]\ntimeout_seconds = {t}\n"
            ))
            .err()
            .unwrap_or_else(|| panic!("timeout_seconds = {t} was accepted"));
            let ConfigError::Invalid { message, .. } = &err else {
                panic!("{t}: {err}");
            };
            assert!(
                message.contains("functions.f.timeout_seconds"),
                "{t}: {err}"
            );
        }
        for t in ["0.5", "3", "900"] {
            let r = load(&format!(
                "[functions.f]\ncommand = [\"x\"]\ntimeout_seconds = {t}\n"
            ));
            assert!(r.is_ok(), "{t}: {:?}", r.err());
        }
    }
}
