//! What an instance costs: an embedded, versioned table of Linux on-demand
//! hourly prices for the EC2 families EKS nodes commonly run on, in the main
//! regions, plus Fargate's per-vCPU-hour and per-GB-hour rates.
//!
//! The data lives in `prices/ec2-on-demand.csv` and `prices/fargate.csv`
//! (compiled in with `include_str!`); their header comments give the version,
//! the date, every source, and what each `verified` value means. Families:
//! x86 m6i, m7i, c6i, c7i, r6i, r7i, t3 and Graviton m6g, m7g, c6g, c7g, r6g,
//! r7g, t4g; sizes .medium (Graviton) or .large up to .4xlarge, and t3/t4g
//! from .micro to .2xlarge; regions us-east-1, us-east-2, us-west-2,
//! eu-west-1, eu-west-2, eu-central-1, ap-southeast-1, ap-southeast-2,
//! ap-northeast-1 and ap-south-1 (Fargate: the first seven except eu-west-2).
//!
//! Spot has no fixed price, so a spot node is priced as its on-demand price
//! times a configurable fraction, [`DEFAULT_SPOT_FRACTION`] unless the user
//! sets another (or gives an explicit spot price in the override file).
//!
//! User prices (savings plans, other regions, other types) come from an
//! override file ([`super::overrides`]) and take precedence over this table.
use std::{collections::BTreeMap, fmt, sync::OnceLock};

use serde::Serialize;

use super::records::{self, TableError};

/// Spot price as a fraction of on-demand, when the user gives none: 0.40,
/// i.e. a 60% discount.
///
/// Measured, not guessed: the SkyPilot catalog snapshot the table was built
/// from also holds each availability zone's current spot price. Over the 448
/// (type, region) pairs of this table's families that had spot prices, the
/// mean discount of the zone-average spot price was 61.9% (median 62.4%;
/// 10th–90th percentile 53.9%–69.8%; Graviton 62.4%, x86 61.0%). We round
/// down to 60%, so spot nodes are, if anything, priced a little high.
/// AWS's own claim is "up to 90%"; spot prices move, so set the fraction
/// from your bill when you can.
pub const DEFAULT_SPOT_FRACTION: f64 = 0.40;

const EC2_CSV: &str = include_str!("prices/ec2-on-demand.csv");
const FARGATE_CSV: &str = include_str!("prices/fargate.csv");

/// CPU architecture of an instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Arch {
    /// `x86_64`/`amd64` or `arm64`/`aarch64` (Kubernetes' `kubernetes.io/arch`
    /// label values included), case-insensitive.
    pub fn parse(text: &str) -> Option<Arch> {
        match text.trim().to_ascii_lowercase().as_str() {
            "x86_64" | "amd64" | "x86" => Some(Arch::X86_64),
            "arm64" | "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// How a node is bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lifecycle {
    OnDemand,
    Spot,
}

impl Lifecycle {
    /// Node label values: EKS managed node groups' `eks.amazonaws.com/capacityType`
    /// (`ON_DEMAND`, `SPOT`), Karpenter's `karpenter.sh/capacity-type`
    /// (`on-demand`, `spot`), and `normal` for on-demand. Case-insensitive.
    pub fn parse(text: &str) -> Option<Lifecycle> {
        match text.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "on-demand" | "ondemand" | "normal" => Some(Lifecycle::OnDemand),
            "spot" => Some(Lifecycle::Spot),
            _ => None,
        }
    }
}

/// How far a figure can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// Read from a cited source for this exact type (or rate) and region.
    Verified,
    /// Computed from a sibling size in the same family and region.
    Derived,
    /// Not stated by an authoritative source for this region.
    Estimated,
    /// Supplied by the user's override file.
    Override,
}

impl Verification {
    fn parse(text: &str) -> Option<Verification> {
        match text {
            "yes" => Some(Verification::Verified),
            "derived" => Some(Verification::Derived),
            "estimated" => Some(Verification::Estimated),
            _ => None,
        }
    }
}

/// One instance type in one region.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceEntry {
    pub instance_type: String,
    pub region: String,
    pub arch: Arch,
    pub vcpus: u32,
    pub memory_gib: f64,
    pub on_demand_usd_per_hour: f64,
    /// An explicit spot price (override file only); otherwise spot is
    /// on-demand × the spot fraction.
    pub spot_usd_per_hour: Option<f64>,
    pub verification: Verification,
    /// Where the figure came from: a source key of the CSV, or
    /// `override line N`.
    pub source: String,
}

/// The price of one node, as [`PriceTable::price`] answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodePrice {
    pub instance_type: String,
    pub region: String,
    pub arch: Arch,
    pub vcpus: u32,
    pub memory_gib: f64,
    pub lifecycle: Lifecycle,
    pub usd_per_hour: f64,
    pub on_demand_usd_per_hour: f64,
    pub verification: Verification,
    /// Where the figure came from, for reports: e.g. `skypilot+karpenter`,
    /// `override line 7`, `on-demand (karpenter) x spot fraction 0.40`.
    pub source: String,
}

/// Fargate's rates in one region for one architecture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FargateRate {
    pub region: String,
    pub arch: Arch,
    pub usd_per_vcpu_hour: f64,
    /// Per GB-hour, AWS's Fargate GB being 1024 MiB.
    pub usd_per_gib_hour: f64,
    pub verification: Verification,
    pub source: String,
}

/// The price table: the embedded data, with the user's overrides applied.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    version: String,
    as_of: String,
    ec2: BTreeMap<(String, String), InstanceEntry>,
    fargate: BTreeMap<(String, Arch), FargateRate>,
    spot_fraction: f64,
}

/// A spot fraction outside (0, 1].
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("spot fraction {0} is not in (0, 1]: it is the spot price over the on-demand price")]
pub struct SpotFractionError(pub f64);

impl PriceTable {
    /// The embedded table, parsed once.
    pub fn embedded() -> &'static PriceTable {
        static TABLE: OnceLock<PriceTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            // The embedded files are constants; `tests::prices` parses them,
            // so this cannot fail in a build whose tests pass.
            PriceTable::parse_embedded().expect("embedded price data parses (see its unit tests)")
        })
    }

    /// Parses the embedded data (what [`PriceTable::embedded`] caches).
    pub fn parse_embedded() -> Result<PriceTable, TableError> {
        PriceTable::parse(EC2_CSV, FARGATE_CSV)
    }

    /// Parses tables in the embedded format.
    pub fn parse(ec2_csv: &str, fargate_csv: &str) -> Result<PriceTable, TableError> {
        let mut table = PriceTable {
            version: records::comment_value(ec2_csv, "version")
                .unwrap_or("unknown")
                .to_string(),
            as_of: records::comment_value(ec2_csv, "as_of")
                .unwrap_or("unknown")
                .to_string(),
            ec2: BTreeMap::new(),
            fargate: BTreeMap::new(),
            spot_fraction: DEFAULT_SPOT_FRACTION,
        };
        let t = records::parse(
            ec2_csv,
            &[
                "instance_type",
                "region",
                "arch",
                "vcpus",
                "memory_gib",
                "usd_per_hour",
                "verified",
                "source",
                "note",
            ],
            &[
                "instance_type",
                "region",
                "arch",
                "vcpus",
                "memory_gib",
                "usd_per_hour",
                "verified",
                "source",
            ],
        )?;
        for row in &t.rows {
            let key = (
                norm(t.text(row, "instance_type")?),
                norm(t.text(row, "region")?),
            );
            let entry = InstanceEntry {
                instance_type: key.0.clone(),
                region: key.1.clone(),
                arch: parse_with(&t, row, "arch", Arch::parse)?,
                vcpus: t.integer(row, "vcpus", 1, 1024)?.ok_or_else(|| {
                    records::field_error(row.line, "vcpus", "required, but empty".into())
                })? as u32,
                memory_gib: t.required_number(row, "memory_gib", 0.125, 32768.0)?,
                on_demand_usd_per_hour: t.required_number(row, "usd_per_hour", 0.0001, 1000.0)?,
                spot_usd_per_hour: None,
                verification: parse_with(&t, row, "verified", Verification::parse)?,
                source: t.text(row, "source")?.to_string(),
            };
            if table.ec2.insert(key, entry).is_some() {
                return Err(records::field_error(
                    row.line,
                    "instance_type",
                    "listed twice for this region".into(),
                ));
            }
        }
        let f = records::parse(
            fargate_csv,
            &[
                "region",
                "arch",
                "usd_per_vcpu_hour",
                "usd_per_gb_hour",
                "verified",
                "source",
                "note",
            ],
            &[
                "region",
                "arch",
                "usd_per_vcpu_hour",
                "usd_per_gb_hour",
                "verified",
                "source",
            ],
        )?;
        for row in &f.rows {
            let rate = FargateRate {
                region: norm(f.text(row, "region")?),
                arch: parse_with(&f, row, "arch", Arch::parse)?,
                usd_per_vcpu_hour: f.required_number(row, "usd_per_vcpu_hour", 0.0001, 10.0)?,
                usd_per_gib_hour: f.required_number(row, "usd_per_gb_hour", 0.00001, 10.0)?,
                verification: parse_with(&f, row, "verified", Verification::parse)?,
                source: f.text(row, "source")?.to_string(),
            };
            if table
                .fargate
                .insert((rate.region.clone(), rate.arch), rate)
                .is_some()
            {
                return Err(records::field_error(
                    row.line,
                    "region",
                    "listed twice for this arch".into(),
                ));
            }
        }
        Ok(table)
    }

    /// The data's version (`# version:` in the CSV).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The date the embedded prices were last confirmed (`# as_of:`).
    pub fn as_of(&self) -> &str {
        &self.as_of
    }

    pub fn spot_fraction(&self) -> f64 {
        self.spot_fraction
    }

    /// The table with another spot fraction (spot price ÷ on-demand price).
    pub fn with_spot_fraction(mut self, fraction: f64) -> Result<PriceTable, SpotFractionError> {
        if !(fraction.is_finite() && fraction > 0.0 && fraction <= 1.0) {
            return Err(SpotFractionError(fraction));
        }
        self.spot_fraction = fraction;
        Ok(self)
    }

    /// The price of a node. The region may be given as a zone
    /// (`us-east-1a`). `None` when the type is unknown in that region.
    pub fn price(
        &self,
        instance_type: &str,
        region: &str,
        lifecycle: Lifecycle,
    ) -> Option<NodePrice> {
        let entry = self.entry(instance_type, region)?;
        let (usd_per_hour, source) = match (lifecycle, entry.spot_usd_per_hour) {
            (Lifecycle::OnDemand, _) => (entry.on_demand_usd_per_hour, entry.source.clone()),
            (Lifecycle::Spot, Some(spot)) => (spot, entry.source.clone()),
            (Lifecycle::Spot, None) => (
                entry.on_demand_usd_per_hour * self.spot_fraction,
                format!(
                    "on-demand ({}) x spot fraction {:.2}",
                    entry.source, self.spot_fraction
                ),
            ),
        };
        Some(NodePrice {
            instance_type: entry.instance_type.clone(),
            region: entry.region.clone(),
            arch: entry.arch,
            vcpus: entry.vcpus,
            memory_gib: entry.memory_gib,
            lifecycle,
            usd_per_hour,
            on_demand_usd_per_hour: entry.on_demand_usd_per_hour,
            verification: entry.verification,
            source,
        })
    }

    /// The table's row for a type in a region (or zone).
    pub fn entry(&self, instance_type: &str, region: &str) -> Option<&InstanceEntry> {
        let t = norm(instance_type);
        let r = norm(region);
        self.ec2
            .get(&(t.clone(), r.clone()))
            .or_else(|| self.ec2.get(&(t, region_of_zone(&r)?.to_string())))
    }

    /// Architecture, vCPUs and memory of a type, from any region.
    pub fn shape(&self, instance_type: &str) -> Option<(Arch, u32, f64)> {
        let t = norm(instance_type);
        self.ec2
            .values()
            .find(|e| e.instance_type == t)
            .map(|e| (e.arch, e.vcpus, e.memory_gib))
    }

    /// Every type the table prices in a region (or zone), priced at
    /// `lifecycle`.
    pub fn prices_in(&self, region: &str, lifecycle: Lifecycle) -> Vec<NodePrice> {
        self.instances_in(region)
            .filter_map(|e| self.price(&e.instance_type, &e.region, lifecycle))
            .collect()
    }

    /// Every type the table prices in a region (or zone).
    pub fn instances_in<'a>(
        &'a self,
        region: &str,
    ) -> impl Iterator<Item = &'a InstanceEntry> + 'a {
        let r = norm(region);
        let r = if self.ec2.keys().any(|(_, reg)| *reg == r) {
            r
        } else {
            region_of_zone(&r).unwrap_or(&r).to_string()
        };
        self.ec2.values().filter(move |e| e.region == r)
    }

    /// Every region the table prices at least one type in.
    pub fn regions(&self) -> Vec<&str> {
        let mut regions: Vec<&str> = self.ec2.keys().map(|(_, r)| r.as_str()).collect();
        regions.sort_unstable();
        regions.dedup();
        regions
    }

    /// Every priced row.
    pub fn entries(&self) -> impl Iterator<Item = &InstanceEntry> {
        self.ec2.values()
    }

    /// Fargate's rates in a region (or zone) for an architecture.
    pub fn fargate(&self, region: &str, arch: Arch) -> Option<&FargateRate> {
        let r = norm(region);
        self.fargate
            .get(&(r.clone(), arch))
            .or_else(|| self.fargate.get(&(region_of_zone(&r)?.to_string(), arch)))
    }

    /// Adds or replaces a row (the override file's job).
    pub(crate) fn set_entry(&mut self, entry: InstanceEntry) {
        self.ec2
            .insert((entry.instance_type.clone(), entry.region.clone()), entry);
    }

    /// Adds or replaces a Fargate rate (the override file's job).
    pub(crate) fn set_fargate(&mut self, rate: FargateRate) {
        self.fargate.insert((rate.region.clone(), rate.arch), rate);
    }
}

impl fmt::Display for NodePrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {:?}: ${:.4}/h ({} vCPU, {} GiB; {})",
            self.instance_type,
            self.region,
            self.lifecycle,
            self.usd_per_hour,
            self.vcpus,
            self.memory_gib,
            self.source
        )
    }
}

/// The region of an availability zone name (`us-east-1a` → `us-east-1`);
/// `None` when the text does not look like a zone.
pub fn region_of_zone(zone: &str) -> Option<&str> {
    let last = zone.chars().last()?;
    let region = zone.strip_suffix(last)?;
    (last.is_ascii_lowercase() && region.ends_with(|c: char| c.is_ascii_digit())).then_some(region)
}

pub(crate) fn norm(text: &str) -> String {
    text.trim().to_ascii_lowercase()
}

fn parse_with<T>(
    table: &records::Table<'_>,
    row: &records::Row<'_>,
    column: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, TableError> {
    let text = table.text(row, column)?;
    parse(text).ok_or_else(|| {
        records::field_error(
            row.line,
            column,
            format!("not a valid value: '{}'", records::printable(text)),
        )
    })
}
