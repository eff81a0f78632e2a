//! `/proc/<pid>/stat` as the kernel writes it, parsed (pure), and the
//! agent's own usage from `/proc/self/stat`; the node reads every
//! process's file (`tally_node::collect::procfs`).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatError {
    #[error("no ')' closing the comm field")]
    NoComm,
    #[error("field {0} is missing")]
    Missing(usize),
    #[error("field {0} is not a number")]
    NotNumber(usize),
}

/// The fields of `/proc/<pid>/stat` the agent uses (see proc_pid_stat(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// Raw bytes: a comm may hold any byte but NUL.
    pub comm: Vec<u8>,
    pub state: u8,
    pub minflt: u64,
    pub majflt: u64,
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    /// Start after boot, clock ticks.
    pub starttime: u64,
    /// Resident pages (`get_mm_rss`).
    pub rss_pages: u64,
}

/// Parses one `/proc/<pid>/stat` line. The comm is between the first `(`
/// and the last `)`, since a comm may itself contain parentheses and spaces.
pub fn parse_stat(line: &[u8]) -> Result<Stat, StatError> {
    let open = line
        .iter()
        .position(|&b| b == b'(')
        .ok_or(StatError::NoComm)?;
    let close = line
        .iter()
        .rposition(|&b| b == b')')
        .ok_or(StatError::NoComm)?;
    if close < open {
        return Err(StatError::NoComm);
    }
    let pid = parse_num(line[..open].trim_ascii(), 1)? as u32;
    let comm = line[open + 1..close].to_vec();
    // Fields after the comm, numbered as in proc_pid_stat(5): 3 is state.
    let rest: Vec<&[u8]> = line[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .collect();
    let field = |n: usize| -> Result<&[u8], StatError> {
        rest.get(n - 3).copied().ok_or(StatError::Missing(n))
    };
    let num = |n: usize| -> Result<u64, StatError> { parse_num(field(n)?.trim_ascii(), n) };
    Ok(Stat {
        pid,
        comm,
        state: field(3)?.first().copied().ok_or(StatError::Missing(3))?,
        minflt: num(10)?,
        majflt: num(12)?,
        cpu_ticks: num(14)?.saturating_add(num(15)?),
        starttime: num(22)?,
        // rss is signed in the kernel's format; a negative value is noise.
        rss_pages: field(24).map(|f| parse_num(f.trim_ascii(), 24).unwrap_or(0))?,
    })
}

fn parse_num(bytes: &[u8], field: usize) -> Result<u64, StatError> {
    if bytes.is_empty() {
        return Err(StatError::Missing(field));
    }
    let mut value: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return Err(StatError::NotNumber(field));
        }
        value = value.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    Ok(value)
}

/// The agent's own CPU (utime+stime) and RSS, from `/proc/self/stat`.
pub fn self_usage(clock_ticks: u64, page_size: u64) -> (f64, u64) {
    let Ok(bytes) = std::fs::read("/proc/self/stat") else {
        return (0.0, 0);
    };
    match parse_stat(&bytes) {
        Ok(s) => (
            s.cpu_ticks as f64 / clock_ticks.max(1) as f64,
            s.rss_pages * page_size,
        ),
        Err(_) => (0.0, 0),
    }
}

/// Clock ticks a second (`_SC_CLK_TCK`), 100 if unknown.
pub fn clock_ticks() -> u64 {
    sysconf(libc::_SC_CLK_TCK).unwrap_or(100)
}

/// The page size (`_SC_PAGESIZE`), 4096 if unknown.
pub fn page_size() -> u64 {
    sysconf(libc::_SC_PAGESIZE).unwrap_or(4096)
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(name) };
    (v > 0).then_some(v as u64)
}
