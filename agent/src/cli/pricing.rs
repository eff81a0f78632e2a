//! The pricing options of `agent report`, `agent workloads` and `agent top`.
use std::path::PathBuf;

use tally_core::cost::{
    Lifecycle,
    live::{Pricing, PricingError},
    report::NodeDefaults,
};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct PricingArgs {
    /// Your own prices (savings plans, other regions); format in the README.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// Spot price as a fraction of on-demand (default 0.40).
    #[arg(long)]
    pub spot_fraction: Option<f64>,
    /// Instance type to price nodes that reported none (no IMDS or labels).
    #[arg(long)]
    pub instance_type: Option<String>,
    /// Region for nodes that reported none.
    #[arg(long)]
    pub region: Option<String>,
    /// Lifecycle (on-demand, spot) for nodes that reported none.
    #[arg(long, value_parser = parse_lifecycle)]
    pub lifecycle: Option<Lifecycle>,
}

fn parse_lifecycle(s: &str) -> Result<Lifecycle, String> {
    Lifecycle::parse(s).ok_or_else(|| format!("`{s}` is not on-demand or spot"))
}

impl PricingArgs {
    pub fn defaults(&self) -> NodeDefaults {
        NodeDefaults {
            instance_type: self.instance_type.clone(),
            region: self.region.clone(),
            lifecycle: self.lifecycle,
        }
    }

    /// The price table these options make; a bad file is an error naming
    /// its line and field.
    pub fn pricing(&self) -> Result<Pricing, PricingError> {
        Pricing::load(self.prices.as_deref(), self.spot_fraction, self.defaults())
    }
}
