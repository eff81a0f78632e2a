//! The subcommands, one file each: each parses its flags into the options
//! of the crate that does the work, runs it, and returns a [`Failure`]
//! that `main` turns into one line on stderr and an exit code.
pub mod args;
pub mod collector;
pub mod health;
pub mod pricing;
pub mod profile;
pub mod report;
pub mod run;
pub mod token_review;
pub mod top;
pub mod transport;
pub mod workloads;

use std::process::ExitCode;

use tally_core::error_chain;

/// Why a subcommand stopped: the one line printed after `agent: `, and the
/// exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    /// The command could not start as asked (flags, privileges, no
    /// terminal): exit 2.
    pub fn usage(message: impl ToString) -> Self {
        Self {
            message: message.to_string(),
            code: 2,
        }
    }

    /// It started and failed: exit 1, with this message.
    pub fn failed_with(message: impl ToString) -> Self {
        Self {
            message: message.to_string(),
            code: 1,
        }
    }

    /// It started and failed: exit 1, with the error's causes.
    pub fn failed(err: &dyn std::error::Error) -> Self {
        Self::failed_with(error_chain(err))
    }

    /// A usage failure with the error's causes.
    pub fn usage_error(err: &dyn std::error::Error) -> Self {
        Self::usage(error_chain(err))
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

/// Root (or the capabilities) to load the probes, else exit 2.
pub fn require_privileges() -> Result<(), Failure> {
    tally_node::privileges::check_self().map_err(Failure::usage)
}
