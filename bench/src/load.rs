//! Whether the machine was busy with something else while a point ran:
//! CPU time spent by processes other than the bench's own, and time stolen
//! by the hypervisor, between two readings of `/proc/stat`. A point run
//! beside other work measures the machine, not Net (BENCHMARKS.md: figures
//! move 2× between hours here), so `nrpc_qps` warns about it.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::slices::{cpu_spent, cpu_time};

/// Other processes may use this share of one CPU during a point before it
/// is flagged.
const OTHERS_LIMIT: f64 = 0.15;
/// The hypervisor may steal this share of all CPUs' time before a point is
/// flagged.
const STEAL_LIMIT: f64 = 0.05;
/// Length of a `/proc/stat` tick (`USER_HZ`, 100 on every Linux ABI).
const TICK: Duration = Duration::from_millis(10);

/// The CPU time the bench's processes spend over a point's measured
/// stretch, read by a helper thread that sleeps through the warm-up, reads
/// [`cpu_time`], sleeps through the stretch and reads again. The three
/// measuring loops (raw client, engine load generator, SDK tasks) all
/// measure from `start + warmup` for `duration`, so one helper serves them
/// without hooks in any; its two wake-ups cost nothing measurable.
pub struct CpuWindow(JoinHandle<Option<Duration>>);

impl CpuWindow {
    /// Starts the helper now, for a point measured from `warmup` from now
    /// for `duration`; `pids` are the bench's other processes.
    pub fn start(pids: &[u32], warmup: Duration, duration: Duration) -> Self {
        let pids = pids.to_vec();
        let from = Instant::now() + warmup;
        CpuWindow(std::thread::spawn(move || {
            std::thread::sleep(from.saturating_duration_since(Instant::now()));
            let before = cpu_time(&pids);
            std::thread::sleep(duration);
            cpu_spent(before, cpu_time(&pids))
        }))
    }

    /// The CPU time measured (waits for the stretch to end).
    pub fn finish(self) -> Option<Duration> {
        self.0.join().ok().flatten()
    }
}

/// The machine-wide counters of the `cpu` line of `/proc/stat`, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CpuTicks {
    /// Everything but idle, iowait and steal.
    busy: u64,
    steal: u64,
    total: u64,
}

impl CpuTicks {
    fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The `cpu ` line: user nice system idle iowait irq softirq steal ...
    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal] = v[..] else {
            return None;
        };
        let busy = user + nice + system + irq + softirq;
        Some(CpuTicks {
            busy,
            steal,
            total: busy + idle + iowait + steal,
        })
    }
}

/// A reading taken when a point starts.
#[derive(Debug)]
pub struct LoadProbe {
    at: Instant,
    ours: Option<Duration>,
    ticks: Option<CpuTicks>,
}

impl LoadProbe {
    /// Reads the counters now; `pids` are the bench's other processes
    /// (server children), whose CPU time is ours.
    pub fn start(pids: &[u32]) -> Self {
        LoadProbe {
            at: Instant::now(),
            ours: cpu_time(pids),
            ticks: CpuTicks::read(),
        }
    }

    /// Why the point since [`start`](Self::start) ran on a busy machine, if
    /// it did; `None` when quiet or when the counters cannot be read.
    pub fn verdict(&self, pids: &[u32]) -> Option<String> {
        let wall = self.at.elapsed().as_secs_f64();
        let ours = cpu_spent(self.ours, cpu_time(pids))?.as_secs_f64();
        let (a, b) = (self.ticks?, CpuTicks::read()?);
        let busy = (b.busy.checked_sub(a.busy)? as f64) * TICK.as_secs_f64();
        let steal = b.steal.checked_sub(a.steal)? as f64;
        let total = b.total.checked_sub(a.total)? as f64;
        judge(wall, ours, busy, steal / total.max(1.0))
    }
}

/// The verdict from the measured seconds: wall time, our CPU, all CPUs'
/// busy time, and the stolen share.
fn judge(wall: f64, ours: f64, busy: f64, steal: f64) -> Option<String> {
    if wall <= 0.0 {
        return None;
    }
    // Tick rounding can make our own time exceed the busy total a little.
    let others = (busy - ours).max(0.0) / wall;
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load1 = loadavg.split_whitespace().next().unwrap_or("?");
    (others > OTHERS_LIMIT || steal > STEAL_LIMIT).then(|| {
        format!(
            "machine busy: other processes used {:.0} % of a CPU, steal {:.1} %, load average {load1}",
            others * 100.0,
            steal * 100.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cpu_line() {
        let stat = "cpu  10 1 5 100 2 3 4 6 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        let t = CpuTicks::parse(stat).unwrap();
        assert_eq!(
            t,
            CpuTicks {
                busy: 23,
                steal: 6,
                total: 131
            }
        );
        assert_eq!(CpuTicks::parse("cpu  1 2 3\n"), None);
        assert_eq!(CpuTicks::parse("intr 5\n"), None);
    }

    #[test]
    fn flags_other_work_and_steal_only() {
        assert!(judge(2.0, 3.9, 4.0, 0.0).is_none(), "all ours");
        assert!(judge(2.0, 3.0, 4.0, 0.0).is_some(), "half a CPU of others");
        assert!(judge(2.0, 1.0, 1.0, 0.10).is_some(), "steal");
        assert!(judge(0.0, 0.0, 9.0, 0.9).is_none(), "nothing measured");
    }
}
