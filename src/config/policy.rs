//! Reading the policy file from disk: the shell's half of [`crate::policy::file`], which only ever
//! sees text. `recoup serve`, `recoup status` and `recoup policy check` all load it through here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{DEFAULT_POLICY_PATH, PolicySettings};
use crate::policy::file::{PolicyError, networks, parse_with};
use crate::policy::networks::BUILT_IN_PATH;
use crate::policy::{Networks, Policy};

/// Reads and validates the policy file at `path`, under the network rules of [`load_networks`]
/// (`networks`, else the default).
pub fn load(path: &Path, networks: Option<&Path>) -> Result<Policy, PolicyError> {
    let text = read(path, "policy")?;
    parse_with(&text, &path.display().to_string(), load_networks(networks)?)
}

/// The card networks' rules: the file at `path` (`RECOUP_NETWORKS`); else `config/networks.toml`
/// when there is one (a checkout, or a deployment that edited it); else the rules built into
/// recoup. A path someone set and got wrong is an error, not a silent fallback.
pub fn load_networks(path: Option<&Path>) -> Result<Arc<Networks>, PolicyError> {
    let Some(path) = networks_path(path) else {
        return Ok(Networks::built_in());
    };
    let text = read(&path, "networks")?;
    networks(&text, &path.display().to_string()).map(Arc::new)
}

/// The file [`load_networks`] reads, `None` for the built-in rules.
pub fn networks_path(path: Option<&Path>) -> Option<PathBuf> {
    match path {
        Some(path) => Some(path.to_path_buf()),
        None if Path::new(BUILT_IN_PATH).exists() => Some(PathBuf::from(BUILT_IN_PATH)),
        None => None,
    }
}

fn read(path: &Path, what: &str) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|e| PolicyError {
        file: path.display().to_string(),
        line: None,
        key: String::new(),
        problem: format!("cannot read the {what} file: {e}"),
    })
}

/// The policy `recoup serve` runs: the configured file, or the shipped one (built in) when the
/// path was left at its default and no file is there (a binary run outside a checkout still works;
/// a path someone set and got wrong is an error, not a silent fallback).
pub fn for_service(settings: &PolicySettings) -> Result<Policy, PolicyError> {
    if settings.path == Path::new(DEFAULT_POLICY_PATH) && !settings.path.exists() {
        tracing::info!(
            "no policy file at {DEFAULT_POLICY_PATH}; the shipped policy built into recoup applies"
        );
        let shipped = Policy::shipped();
        return Ok(Policy {
            networks: load_networks(settings.networks.as_deref())?,
            ..shipped
        });
    }
    load(&settings.path, settings.networks.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_file_says_so() {
        let err = load(Path::new("/nonexistent/policy.toml"), None).unwrap_err();
        assert_eq!(err.line, None);
        assert!(
            err.to_string()
                .starts_with("/nonexistent/policy.toml: cannot read the policy file"),
            "{err}"
        );
    }
}
