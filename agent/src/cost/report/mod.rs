//! `agent report`: asks a collector for every node and every workload's
//! history over `--since`, prices them ([`build`]) and prints the cost
//! report as text, Markdown, JSON or one self-contained HTML file.
pub mod build;
pub mod html;
pub mod render;

#[cfg(test)]
mod tests;

use std::{path::PathBuf, time::Duration};

use super::live::{Pricing, PricingError};

use tally_proto as pb;

use crate::{
    collector::ingest::now_unix_ms,
    cost::PriceTable,
    transport::{
        ClientSecurity,
        query::{self, QueryError},
    },
};

pub use build::{CostReport, NodeDefaults};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Pricing(#[from] PricingError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Json,
    Html,
}

#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub collector: String,
    pub security: ClientSecurity,
    pub format: Format,
    pub since: Duration,
    /// The user's price file (format in [`crate::cost::overrides`]).
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
    let (nodes, histories) = query::run(
        &opts.collector,
        &opts.security,
        Duration::from_secs(60),
        |mut client| async move {
            let nodes = client
                .list_nodes(pb::ListNodesRequest {})
                .await?
                .into_inner()
                .nodes;
            let workloads = client
                .list_workloads(pb::ListWorkloadsRequest::default())
                .await?
                .into_inner()
                .workloads;
            let mut histories = Vec::with_capacity(workloads.len());
            for workload in workloads {
                let history = client
                    .workload_history(pb::WorkloadHistoryRequest {
                        key: workload.key.clone(),
                        since_unix_ms: since_ms,
                    })
                    .await?
                    .into_inner();
                if !history.points.is_empty() {
                    histories.push(build::WorkloadHistory {
                        workload: history.workload.unwrap_or(workload),
                        points: history.points,
                    });
                }
            }
            Ok((nodes, histories))
        },
    )?;
    Ok(build::build(
        &nodes,
        &histories,
        &table,
        &opts.defaults,
        opts.margin,
        now_ms,
        since_ms,
    ))
}

/// The report in `format`.
pub fn render(report: &CostReport, format: Format) -> String {
    match format {
        Format::Text => render::text(report),
        Format::Markdown => render::markdown(report),
        Format::Json => render::json(report),
        Format::Html => html::html(report),
    }
}

/// `agent report`: prints the report on stdout.
pub fn run(opts: &ReportOptions) -> Result<(), ReportError> {
    use std::io::Write as _;
    let report = fetch(opts)?;
    let mut out = std::io::stdout().lock();
    out.write_all(render(&report, opts.format).as_bytes())?;
    out.flush()?;
    Ok(())
}
