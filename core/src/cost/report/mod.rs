//! The cost report: every node and every workload's history over a
//! window, priced ([`build`]), as text, Markdown, JSON or one
//! self-contained HTML file. Fetching them from a collector is the
//! binary's (`agent report`).
pub mod build;
pub mod html;
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
