//! Running commands with the command line echoed, and errors that name it.
use std::{
    ffi::OsStr,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

pub fn cmd(program: impl AsRef<OsStr>) -> Command {
    Command::new(program)
}

/// `cargo` on the toolchain that runs xtask (stable).
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs to completion; fails if the exit status is not zero.
pub fn run(c: &mut Command) -> Result<()> {
    let line = describe(c);
    eprintln!("xtask: {line}");
    let status = c
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed: {status}");
    }
    Ok(())
}

/// Runs and returns stdout; stderr passes through.
pub fn output(c: &mut Command) -> Result<String> {
    let line = describe(c);
    let out = c
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !out.status.success() {
        bail!("`{line}` failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True if the command runs and exits zero, quietly.
pub fn succeeds(c: &mut Command) -> bool {
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Replaces this process with the command (keeps the agent's exit code and
/// lets it receive the terminal's signals directly).
pub fn exec(c: &mut Command) -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    let line = describe(c);
    let err = c.exec();
    Err(err).with_context(|| format!("cannot exec `{line}`"))
}
