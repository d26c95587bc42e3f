//! Reading the policy file from disk: the shell's half of [`crate::policy::file`], which only ever
//! sees text. `recoup serve`, `recoup status` and `recoup policy check` all load it through here.

use std::path::Path;

use super::{DEFAULT_POLICY_PATH, PolicySettings};
use crate::policy::Policy;
use crate::policy::file::{PolicyError, parse};

/// Reads and validates the policy file at `path`.
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
        file: path.display().to_string(),
        line: None,
        key: String::new(),
        problem: format!("cannot read the policy file: {e}"),
    })?;
    parse(&text, &path.display().to_string())
}

/// The policy `recoup serve` runs: the configured file, or the shipped one (built in) when the
/// path was left at its default and no file is there (a binary run outside a checkout still works;
/// a path someone set and got wrong is an error, not a silent fallback).
pub fn for_service(settings: &PolicySettings) -> Result<Policy, PolicyError> {
    if settings.path == Path::new(DEFAULT_POLICY_PATH) && !settings.path.exists() {
        tracing::info!(
            "no policy file at {DEFAULT_POLICY_PATH}; the shipped policy built into recoup applies"
        );
        return Ok(Policy::shipped());
    }
    load(&settings.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_file_says_so() {
        let err = load(Path::new("/nonexistent/policy.toml")).unwrap_err();
        assert_eq!(err.line, None);
        assert!(
            err.to_string()
                .starts_with("/nonexistent/policy.toml: cannot read the policy file"),
            "{err}"
        );
    }
}
