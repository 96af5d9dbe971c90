//! Exit codes: what kind of failure ended a command, for scripts to act on.
//!
//! Classified from the error's types (the SDK's [`mass_sdk::Error`], the
//! config's [`ConfigError`], and the CLI's own [`BadInput`] and
//! [`JobFailed`]), never from its text. The first cause in the chain that
//! says something decides.

use mass_sdk::Error as SdkError;

use crate::config::ConfigError;

/// The command did what was asked.
pub const OK: u8 = 0;
/// Any other failure (a node's own error, a file that cannot be written...).
pub const FAILURE: u8 = 1;
/// Bad input: a usage error (clap's own code), a flag or file the command
/// cannot use, or a request a node refused as invalid (4xx).
pub const BAD_INPUT: u8 = 2;
/// No node answered: every node given was unreachable, timed out, or
/// answered with a server error.
pub const NO_NODE: u8 = 3;
/// A job (or study) the command followed ended failed or cancelled.
pub const JOB_FAILED: u8 = 4;
/// A node refused the token: none given, a wrong one, or one whose role is
/// too low (401, 403).
pub const UNAUTHORIZED: u8 = 5;

/// The table `mass --help` ends with.
pub const HELP: &str = "\
Exit codes:
  0  success
  1  any other failure
  2  bad input: a usage error, a flag or file that cannot be used, a request a node refused (4xx)
  3  no node answered (every --node unreachable, timed out, or answering 5xx)
  4  a followed job or study ended failed or cancelled
  5  unauthorized: the node refused the token (401, 403)

Environment: client commands read MASS_NODE, MASS_TOKEN, MASS_TOKEN_FILE and MASS_CA_CERT;
`mass node start` reads a MASS_* variable for each flag (see `mass node start --help`).";

/// Input the command cannot use, found by the CLI itself (a flag that does
/// not parse, a file that cannot be read). Shows as the error it wraps.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BadInput(anyhow::Error);

/// Marks `error` as bad input, keeping its message and causes.
pub fn into_bad_input(error: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(BadInput(error.into()))
}

/// `bad_input!("--flag {x}: expected ...")`: a [`BadInput`] error from a message.
macro_rules! bad_input {
    ($($arg:tt)*) => {
        $crate::cli::exit::into_bad_input(anyhow::anyhow!($($arg)*))
    };
}
pub(crate) use bad_input;

/// A job or study that the command followed ended failed or cancelled.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JobFailed(pub String);

/// The exit code for `error`.
pub fn code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.is::<BadInput>() || cause.is::<ConfigError>() {
            return BAD_INPUT;
        }
        if cause.is::<JobFailed>() {
            return JOB_FAILED;
        }
        if let Some(error) = cause.downcast_ref::<SdkError>() {
            return sdk_code(error);
        }
    }
    FAILURE
}

/// The exit code of an SDK error.
pub fn sdk_code(error: &SdkError) -> u8 {
    match error {
        SdkError::NoNodes | SdkError::InvalidUrl { .. } | SdkError::Invalid(_) | SdkError::Io { .. } => BAD_INPUT,
        SdkError::Unreachable { .. } => NO_NODE,
        SdkError::Api { status: 401 | 403, .. } => UNAUTHORIZED,
        // Timeouts and rate limits are the node's state, not the request's fault.
        SdkError::Api { status: 408 | 429, .. } => FAILURE,
        SdkError::Api { status: 400..=499, .. } => BAD_INPUT,
        SdkError::Api { .. } | SdkError::Decode { .. } | SdkError::Launch(_) => FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    fn api(status: u16) -> anyhow::Error {
        SdkError::Api { url: "http://n/".into(), status, message: "m".into() }.into()
    }

    #[test]
    fn sdk_errors_map_to_their_codes() {
        let unreachable = SdkError::Unreachable { attempts: vec!["http://127.0.0.1:9/: connection failed".into()] };
        assert_eq!(code(&unreachable.into()), NO_NODE);
        assert_eq!(code(&api(401)), UNAUTHORIZED);
        assert_eq!(code(&api(403)), UNAUTHORIZED);
        for status in [400, 404, 409, 413, 422] {
            assert_eq!(code(&api(status)), BAD_INPUT, "{status}");
        }
        assert_eq!(code(&api(429)), FAILURE);
        assert_eq!(code(&api(500)), FAILURE);
        assert_eq!(code(&SdkError::InvalidUrl { url: "x".into(), reason: "r".into() }.into()), BAD_INPUT);
        assert_eq!(code(&SdkError::NoNodes.into()), BAD_INPUT);
        assert_eq!(code(&SdkError::Invalid("bad id".into()).into()), BAD_INPUT);
        assert_eq!(code(&SdkError::Io { what: "cannot read f".into(), reason: "r".into() }.into()), BAD_INPUT);
        assert_eq!(code(&SdkError::Decode { url: "u".into(), reason: "r".into() }.into()), FAILURE);
    }

    #[test]
    fn context_keeps_the_cause_and_the_first_typed_cause_decides() {
        let wrapped = Err::<(), _>(SdkError::Unreachable { attempts: vec![] }).context("listing peers").unwrap_err();
        assert_eq!(code(&wrapped), NO_NODE);
        // Bad input wrapping an SDK error it was built from stays bad input.
        assert_eq!(code(&into_bad_input(api(500))), BAD_INPUT);
        let config = ConfigError::NoDataDir;
        assert_eq!(code(&anyhow::Error::new(config).context("starting")), BAD_INPUT);
    }

    #[test]
    fn the_cli_own_errors_and_plain_ones() {
        let error = bad_input!("--task {}: expected classification or regression", "x");
        assert_eq!(code(&error), BAD_INPUT);
        assert_eq!(error.to_string(), "--task x: expected classification or regression", "shown as written");
        let error = into_bad_input(anyhow::anyhow!("inner").context("outer"));
        assert_eq!(format!("{error:#}"), "outer: inner", "causes are kept");
        assert_eq!(code(&JobFailed("job failed: out of memory".into()).into()), JOB_FAILED);
        assert_eq!(code(&anyhow::anyhow!("something else")), FAILURE);
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full");
        assert_eq!(code(&anyhow::Error::new(io)), FAILURE);
    }
}
