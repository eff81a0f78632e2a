//! Flag groups more than one subcommand flattens in, and their parsers.
use std::{path::PathBuf, time::Duration};

use clap::ValueEnum;
use tally_core::model::NodeIdentity;
use tally_export::{ExportOptions, SeriesLimits, otlp};
use tally_node::{
    enrich::{kube, node},
    probes::{LoadOptions, StackSampling, SyscallHooks},
};

/// Kubernetes metadata: pods, owners, requests and limits of containers.
#[derive(Debug, clap::Args)]
pub struct KubeArgs {
    /// Ask the API server for the pods of this node: `auto` does when
    /// running in a pod (KUBERNETES_SERVICE_HOST) or given --kubeconfig;
    /// otherwise (and while it is unreachable) the names come from the
    /// container runtime's labels.
    #[arg(long, value_enum, default_value_t = kube::KubeMode::Auto)]
    pub kube: kube::KubeMode,
    /// Reach the API server with this kubeconfig instead of the pod's
    /// service account.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

impl KubeArgs {
    pub fn source(
        &self,
        node: &str,
        labels: Option<std::sync::mpsc::Sender<std::collections::BTreeMap<String, String>>>,
    ) -> kube::PodSource {
        kube::PodSource::for_node(self.kube, self.kubeconfig.clone(), node, labels)
    }
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Export OTLP metrics over gRPC to this endpoint, e.g.
    /// http://otel-collector:4317 (https:// for TLS).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Export the sampled user stacks (--stack-sampling) as OTLP profiles
    /// (v1.10, `ProfilesService`) to this endpoint, once a window; it takes
    /// the --otlp-header, compression, time-out, CA and queue settings.
    #[arg(long, value_name = "URL")]
    pub otlp_profiles_endpoint: Option<String>,
    /// gRPC metadata sent with every OTLP export, e.g.
    /// `authorization=Bearer TOKEN`; repeat for several.
    #[arg(long = "otlp-header", value_name = "KEY=VALUE")]
    pub otlp_headers: Vec<String>,
    /// Compression of OTLP exports.
    #[arg(long, value_enum, default_value_t = Compression::Gzip)]
    pub otlp_compression: Compression,
    /// Time-out of one OTLP export.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub otlp_timeout: Duration,
    /// CA certificate (PEM) for an https:// endpoint; the system's roots
    /// otherwise.
    #[arg(long, value_name = "FILE")]
    pub otlp_ca: Option<PathBuf>,
    /// Exports kept while the endpoint is slow or down; past it the oldest
    /// is dropped (and counted in tally_otlp_dropped_exports_total).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub otlp_queue: u64,
    /// Serve Prometheus metrics on http://ADDR/metrics, with /healthz and
    /// /readyz (e.g. 0.0.0.0:9464; port 0 picks one, logged).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Processes (and containers) exported at once; past it the least
    /// recently active are dropped (tally_exporter_dropped_series_total).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub export_max_series: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Compression {
    Gzip,
    None,
}

impl ExportArgs {
    /// The export options; a malformed header is an error.
    pub fn options(&self) -> Result<ExportOptions, String> {
        Ok(ExportOptions {
            otlp: self.otlp_config(self.otlp_endpoint.as_deref())?,
            otlp_profiles: self
                .otlp_config(self.otlp_profiles_endpoint.as_deref())?
                .map(|c| otlp::OtlpConfig {
                    signal: otlp::Signal::Profiles,
                    ..c
                }),
            metrics_listen: self.metrics_listen,
            limits: SeriesLimits {
                max_series: self.export_max_series as usize,
                ..Default::default()
            },
        })
    }
}

impl ExportArgs {
    /// One endpoint's exporter settings, from the shared flags.
    fn otlp_config(&self, endpoint: Option<&str>) -> Result<Option<otlp::OtlpConfig>, String> {
        let Some(endpoint) = endpoint else {
            return Ok(None);
        };
        let mut config = otlp::OtlpConfig::new(endpoint);
        for h in &self.otlp_headers {
            config
                .headers
                .extend(otlp::parse_headers(h).map_err(|e| e.to_string())?);
        }
        config.gzip = matches!(self.otlp_compression, Compression::Gzip);
        config.timeout = self.otlp_timeout;
        config.ca_file.clone_from(&self.otlp_ca);
        config.queue = self.otlp_queue as usize;
        Ok(Some(config))
    }
}

/// Where the node's EC2 identity comes from.
#[derive(Debug, clap::Args)]
pub struct ImdsArgs {
    /// IMDSv2 endpoint for the instance type, zone, region and lifecycle;
    /// defaults to $AWS_EC2_METADATA_SERVICE_ENDPOINT, else
    /// http://169.254.169.254. Asked once, in the background, 1 s time-outs.
    #[arg(long, value_name = "URL")]
    pub imds_endpoint: Option<String>,
    /// Never ask IMDS (also with AWS_EC2_METADATA_DISABLED=true): the node's
    /// labels, else "unknown".
    #[arg(long)]
    pub no_imds: bool,
}

impl ImdsArgs {
    /// The IMDS client, unless disabled; a bad endpoint is an error.
    pub fn client(&self) -> Result<Option<node::Imds>, String> {
        let disabled = self.no_imds
            || std::env::var("AWS_EC2_METADATA_DISABLED")
                .is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        if disabled {
            return Ok(None);
        }
        let endpoint = self
            .imds_endpoint
            .clone()
            .or_else(|| std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT").ok())
            .unwrap_or_else(|| node::DEFAULT_IMDS_ENDPOINT.to_owned());
        node::Imds::new(&endpoint, node::IMDS_TIMEOUT)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// cpu-clock samples per second on each CPU.
    #[arg(long, default_value_t = 99, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub sample_hz: u64,
    /// Threads the sample map holds; past it, new threads are counted as drops.
    #[arg(long, default_value_t = 32768, value_parser = clap::value_parser!(u32).range(16..))]
    pub max_threads: u32,
    /// Processes the syscall map holds; past it, new processes are counted as drops.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(16..))]
    pub max_processes: u32,
    /// Never put uprobes in processes whose comm or cgroup path (which
    /// holds the container id) contains this; repeat for several. Their GC
    /// is still seen through thread names and stacks.
    #[arg(long = "no-uprobes-for", value_name = "PATTERN")]
    pub no_uprobes_for: Vec<String>,
    /// Whose user stacks are sampled with the CPU: the runtimes whose GC
    /// only stacks show (Go, Node), everyone, or no one.
    #[arg(long, value_enum, default_value_t = StackSampling::GcRuntimes)]
    pub stack_sampling: StackSampling,
    /// Where the allocation syscalls (mmap, munmap, brk, mremap, madvise)
    /// are counted: fexit on the kernel's syscall functions where the
    /// kernel permits it, else the syscalls:sys_exit_* tracepoints (auto);
    /// fexit only; or the tracepoints only.
    #[arg(long, value_enum, default_value_t = SyscallHooks::Auto)]
    pub syscall_hooks: SyscallHooks,
}

impl ProbeArgs {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            sample_hz: self.sample_hz,
            max_threads: self.max_threads,
            max_processes: self.max_processes,
            stack_sampling: self.stack_sampling,
            syscall_hooks: self.syscall_hooks,
        }
    }

    pub fn uprobes(&self) -> tally_node::collect::runtimes::UprobePolicy {
        tally_node::collect::runtimes::UprobePolicy {
            exclude: self.no_uprobes_for.clone(),
        }
    }
}

/// 90s, 30m, 24h, 7d.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    tally_collector::parse_duration(s)
}

/// A window length: 0.1 to 3600 seconds.
pub fn parse_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.1..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0.1 and 3600 seconds".into())
    }
}

/// WIDTHxHEIGHT.
#[cfg(feature = "bench")]
pub fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s.split_once('x').ok_or("WIDTHxHEIGHT, e.g. 80x24")?;
    let w: u16 = w.parse().map_err(|e| format!("{e}"))?;
    let h: u16 = h.parse().map_err(|e| format!("{e}"))?;
    Ok((w, h))
}

/// This node's name: --node-name, else the downward API's NODE_NAME, else
/// the host name.
pub fn node_name(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| hostname().unwrap_or_else(|| "unknown".into()))
}

/// The kernel's host name, if it can be read.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
}

/// A node identity with only its name and CPUs known yet (IMDS and the
/// node's labels fill in the rest in the background).
pub fn identity_of(node_name: String) -> NodeIdentity {
    NodeIdentity {
        node_name,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get() as u32),
        ..Default::default()
    }
}
