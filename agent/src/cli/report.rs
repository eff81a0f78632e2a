//! `agent report`: asks a collector for every node and every workload's
//! history over `--since`, prices them (`tally_core::cost::report::build`)
//! and prints the cost report.
use std::{path::PathBuf, time::Duration};

use tally_core::{
    cost::{
        PriceTable,
        live::{Pricing, PricingError},
        report::{CostReport, Format, NodeDefaults, build},
    },
    time::now_unix_ms,
};
use tally_proto as pb;
use tally_transport::{
    ClientSecurity,
    query::{self, QueryError},
};

use super::{Failure, args::parse_duration, pricing::PricingArgs, transport::ClientArgs};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Markdown,
    Json,
    Html,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The collector, e.g. http://collector:4317.
    #[arg(long)]
    collector: String,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    /// How far back to look: 90s, 10m, 24h, 7d.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    since: Duration,
    /// Margin over observed peaks for requests and limits.
    #[arg(long, default_value_t = tally_core::cost::recommend::DEFAULT_MARGIN)]
    margin: f64,
    #[command(flatten)]
    pricing: PricingArgs,
    #[command(flatten)]
    security: ClientArgs,
}

/// `agent report`.
pub fn command(args: ReportArgs) -> Result<(), Failure> {
    let opts = ReportOptions {
        collector: args.collector,
        security: (&args.security).into(),
        format: match args.format {
            ReportFormat::Text => Format::Text,
            ReportFormat::Markdown => Format::Markdown,
            ReportFormat::Json => Format::Json,
            ReportFormat::Html => Format::Html,
        },
        since: args.since,
        defaults: args.pricing.defaults(),
        prices: args.pricing.prices,
        spot_fraction: args.pricing.spot_fraction,
        margin: args.margin,
    };
    run(&opts).map_err(|e| Failure::failed(&e))
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Pricing(#[from] PricingError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub collector: String,
    pub security: ClientSecurity,
    pub format: Format,
    pub since: Duration,
    /// The user's price file (format in `tally_core::cost::overrides`).
    pub prices: Option<PathBuf>,
    pub spot_fraction: Option<f64>,
    /// Margin over observed peaks for requests and limits.
    pub margin: f64,
    pub defaults: NodeDefaults,
}

/// The price table with the user's file and spot fraction applied.
pub fn price_table(opts: &ReportOptions) -> Result<PriceTable, ReportError> {
    Ok(Pricing::load(
        opts.prices.as_deref(),
        opts.spot_fraction,
        NodeDefaults::default(),
    )?
    .table)
}

/// Fetches, builds and returns the report.
pub fn fetch(opts: &ReportOptions) -> Result<CostReport, ReportError> {
    let table = price_table(opts)?;
    let now_ms = now_unix_ms();
    let since_ms = now_ms - i64::try_from(opts.since.as_millis()).unwrap_or(i64::MAX);
    let (table, defaults) = (&table, &opts.defaults);
    let report = query::run(
        &opts.collector,
        &opts.security,
        Duration::from_secs(60),
        |mut client| async move {
            let nodes = client
                .list_nodes(pb::ListNodesRequest {})
                .await?
                .into_inner()
                .nodes;
            // Raw windows while the collector keeps them, else its
            // rolled-up tiers: one stream for every workload, each part
            // priced as it arrives.
            let mut chunks = client
                .cost_history(pb::CostHistoryRequest {
                    since_unix_ms: since_ms,
                })
                .await?
                .into_inner();
            let mut report = None;
            let mut bucket_seconds = 0;
            while let Some(chunk) = chunks.message().await? {
                bucket_seconds = chunk.bucket_seconds;
                // Priced from where the history starts (the first bucket's
                // start, when rolled up).
                let report = report.get_or_insert_with(|| {
                    build::ReportBuilder::new(
                        &nodes,
                        table,
                        defaults,
                        opts.margin,
                        now_ms,
                        chunk.from_unix_ms,
                    )
                });
                for h in chunk.workloads {
                    report.add(&build::WorkloadHistory {
                        workload: h.workload.unwrap_or_default(),
                        points: h.points,
                        spans: h.spans,
                    });
                }
            }
            let report = report.unwrap_or_else(|| {
                build::ReportBuilder::new(&nodes, table, defaults, opts.margin, now_ms, since_ms)
            });
            Ok((report.finish(), bucket_seconds))
        },
    )?;
    let (mut report, bucket_seconds) = report;
    report.history_bucket_seconds = bucket_seconds;
    Ok(report)
}

/// `agent report`: prints the report on stdout.
pub fn run(opts: &ReportOptions) -> Result<(), ReportError> {
    use std::io::Write as _;
    let report = fetch(opts)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    tally_core::cost::report::write(&report, opts.format, &mut out)?;
    out.flush()?;
    Ok(())
}
