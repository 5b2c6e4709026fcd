//! The process's own figures, read from `/proc` when asked (Linux; elsewhere
//! they are left out): resident memory, open file descriptors, CPU time and
//! start time, under the names Prometheus client libraries use.

/// Clock ticks per second of `/proc/*/stat` times: `USER_HZ`, which the
/// kernel fixes at 100 for user space on every architecture Linux supports.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of the process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Process {
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

impl Process {
    /// Reads `/proc/self`; `None` where it cannot be read.
    pub fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) is in parentheses and may hold spaces:
        // the fields counted from 3 start after its last `)`.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        let (utime, stime, start_ticks) = (field(14)?, field(15)?, field(22)?);
        let rss_pages = field(24)?;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        Some(Process {
            resident_bytes: rss_pages * page_size(),
            open_fds,
            cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
            start_time_seconds: boot_time as f64 + start_ticks as f64 / TICKS_PER_SECOND,
        })
    }
}

/// The memory page size (4 KiB unless the kernel says otherwise).
fn page_size() -> u64 {
    // `/proc/self/smaps_rollup` would cost a walk of every mapping; the
    // auxiliary vector names the page size at no cost.
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| {
            const AT_PAGESZ: u64 = 6;
            auxv.chunks_exact(16).find_map(|pair| {
                let key = u64::from_ne_bytes(pair[..8].try_into().ok()?);
                let value = u64::from_ne_bytes(pair[8..].try_into().ok()?);
                (key == AT_PAGESZ).then_some(value)
            })
        })
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let p = Process::read().expect("/proc is readable");
        assert!(p.resident_bytes > 1 << 20, "{p:?}");
        assert!(p.open_fds >= 3, "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started within the last hour (a test process), not in the future.
        assert!(
            p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 3600.0,
            "{p:?} now {now}"
        );
        assert!(p.cpu_seconds >= 0.0);
    }
}
