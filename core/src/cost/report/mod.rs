//! The cost report: every node and every workload's history over a
//! window, priced ([`build`]), as text, Markdown, JSON or one
//! self-contained HTML file. Fetching them from a collector is the
//! binary's (`agent report`).
pub mod build;
pub mod html;
mod line;
pub mod names;
pub mod render;
pub mod summary;

#[cfg(test)]
mod tests;

pub use build::{CostReport, NodeDefaults};
pub use summary::Summary;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Json,
    Html,
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

/// Writes the report in `format` to `out`. JSON is written as it is
/// serialized: a large cluster's month is 100 MiB of it, not worth holding
/// (and growing, copying) in memory first.
pub fn write(
    report: &CostReport,
    format: Format,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            out.write_all(b"\n")
        }
        _ => out.write_all(render(report, format).as_bytes()),
    }
}
