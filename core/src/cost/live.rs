//! The cost columns of `agent top` and `agent workloads`: what a workload
//! would cost per month if it kept using the CPU and memory it uses now,
//! at its node's CPU and memory rates ([`allocation::NodeRates`], the
//! OpenCost split of the node's price). Usage only: requests, idle and GC
//! tax need a data window and live in `agent report`.
use std::path::{Path, PathBuf};

use tally_proto as pb;

use super::{
    HOURS_PER_MONTH, Lifecycle, PriceTable,
    allocation::NodeRates,
    nonneg, overrides,
    report::build::{NodeDefaults, price_node},
};

#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("cannot read the price file {path}: {source}")]
    PriceFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("price file {path}: {source}")]
    Prices {
        path: PathBuf,
        source: overrides::OverrideError,
    },
    #[error("spot fraction {0} is not within (0, 1]")]
    SpotFraction(f64),
}

/// The price table (with the user's file and spot fraction) and what to
/// assume for nodes that reported no instance type, region or lifecycle.
#[derive(Debug, Clone)]
pub struct Pricing {
    pub table: PriceTable,
    pub defaults: NodeDefaults,
}

impl Pricing {
    /// The embedded table, with `prices` (format in [`overrides`]) and
    /// `spot_fraction` applied.
    pub fn load(
        prices: Option<&Path>,
        spot_fraction: Option<f64>,
        defaults: NodeDefaults,
    ) -> Result<Self, PricingError> {
        let mut table = PriceTable::embedded().clone();
        if let Some(path) = prices {
            let text = std::fs::read_to_string(path).map_err(|source| PricingError::PriceFile {
                path: path.to_owned(),
                source,
            })?;
            table = overrides::parse(&text)
                .and_then(|o| o.apply(&table))
                .map_err(|source| PricingError::Prices {
                    path: path.to_owned(),
                    source,
                })?;
        }
        if let Some(f) = spot_fraction {
            table = table
                .with_spot_fraction(f)
                .map_err(|e| PricingError::SpotFraction(e.0))?;
        }
        Ok(Self { table, defaults })
    }

    /// The embedded table, no defaults.
    pub fn embedded() -> Self {
        Self {
            table: PriceTable::embedded().clone(),
            defaults: NodeDefaults::default(),
        }
    }

    /// A node's rates from the identity it reported (or the defaults where
    /// it reported none); `None` when the table does not price it.
    pub fn rates(&self, identity: Option<&pb::NodeIdentity>) -> Option<NodeRates> {
        price_node("", identity, &self.table, &self.defaults)
            .0
            .rates
    }

    /// One line about a node's price for a header: `m6i.large us-east-1
    /// on-demand $0.096/h`, or why it is not priced.
    pub fn describe(&self, identity: Option<&pb::NodeIdentity>) -> String {
        let (node, _) = price_node("", identity, &self.table, &self.defaults);
        match &node.price {
            Some(p) => format!(
                "{} {} {} ${:.4}/h",
                p.instance_type,
                p.region,
                if p.lifecycle == Lifecycle::Spot {
                    "spot"
                } else {
                    "on-demand"
                },
                p.usd_per_hour
            ),
            // Short, for a header: the reason without the advice.
            None if node.instance_type.is_empty() => "unpriced: no instance type".into(),
            None if node.region.is_empty() => "unpriced: no region".into(),
            None => format!(
                "unpriced: {} in {} not in the price table",
                node.instance_type, node.region
            ),
        }
    }
}

/// USD per month (730 h) of `cores` of CPU and `rss_bytes` of memory at
/// `rates`.
pub fn usage_usd_per_month(rates: &NodeRates, cores: f64, rss_bytes: f64) -> f64 {
    (rates.cpu_cost(nonneg(cores), 1.0) + rates.memory_cost(nonneg(rss_bytes), 1.0))
        * HOURS_PER_MONTH
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m6i_large() -> pb::NodeIdentity {
        pb::NodeIdentity {
            instance_type: "m6i.large".into(),
            region: "us-east-1".into(),
            lifecycle: "on-demand".into(),
            ..Default::default()
        }
    }

    #[test]
    fn usage_is_priced_at_the_node_rates() {
        let pricing = Pricing::embedded();
        let rates = pricing.rates(Some(&m6i_large())).unwrap();
        // m6i.large: $0.096/h, 2 vCPU, 8 GiB. OpenCost's ratio 7.46:
        // GiB-hour = 0.096 / (2 × 7.46 + 8) = 0.0041882,
        // vCPU-hour = 7.46 × that = 0.0312443 (rounding of the ratio aside).
        // One core and one GiB for 730 h ≈ (0.031244 + 0.004188) × 730.
        let month = usage_usd_per_month(&rates, 1.0, 1024.0 * 1024.0 * 1024.0);
        let expected = (rates.usd_per_vcpu_hour + rates.usd_per_gib_hour) * 730.0;
        assert!((month - expected).abs() < 1e-9);
        assert!((month - 25.87).abs() < 0.02, "{month}");
        // The whole node for a month is its price × 730 h.
        let node = usage_usd_per_month(&rates, 2.0, 8.0 * 1024.0 * 1024.0 * 1024.0);
        assert!((node - 0.096 * 730.0).abs() < 0.01, "{node}");
        assert_eq!(usage_usd_per_month(&rates, f64::NAN, -1.0), 0.0);
    }

    #[test]
    fn spot_unknown_and_assumed_nodes() {
        let pricing = Pricing::embedded();
        let spot = pb::NodeIdentity {
            lifecycle: "SPOT".into(),
            ..m6i_large()
        };
        let od = pricing.rates(Some(&m6i_large())).unwrap();
        let sp = pricing.rates(Some(&spot)).unwrap();
        assert!(sp.usd_per_vcpu_hour < od.usd_per_vcpu_hour);
        let off_ec2 = pb::NodeIdentity {
            instance_type: "unknown".into(),
            region: "unknown".into(),
            ..Default::default()
        };
        assert!(pricing.rates(Some(&off_ec2)).is_none());
        assert_eq!(
            pricing.describe(Some(&off_ec2)),
            "unpriced: no instance type"
        );
        let assumed = Pricing {
            defaults: NodeDefaults {
                instance_type: Some("m6i.large".into()),
                region: Some("us-east-1".into()),
                lifecycle: None,
            },
            ..Pricing::embedded()
        };
        assert_eq!(assumed.rates(Some(&off_ec2)), Some(od));
        assert_eq!(
            assumed.describe(None),
            "m6i.large us-east-1 on-demand $0.0960/h"
        );
    }
}
