//! The user's own prices: savings plans, reserved instances, negotiated
//! discounts, regions or instance types the embedded table lacks, Fargate
//! rates. They take precedence over the embedded table.
//!
//! # Format
//!
//! A small CSV file with a header line (the dialect of [`super::records`]:
//! `#` comments, blank lines skipped, columns in any order, no quoting):
//!
//! ```text
//! # Our prices: 1-year compute savings plan, spot where we know it.
//! instance_type,region,usd_per_hour,lifecycle,arch,vcpus,memory_gib,usd_per_vcpu_hour,usd_per_gb_hour,note
//! m6i.xlarge,us-east-1,0.1210,on-demand,,,,,,savings plan rate
//! m6i.xlarge,us-east-1,0.0700,spot,,,,,,
//! m7g.large,sa-east-1,0.1307,,arm64,2,8,,,a region the table lacks
//! fargate,eu-central-1,,,x86_64,,,0.04656,0.00511,from our bill
//! ```
//!
//! Columns (`instance_type` and `region` are required; the others may be
//! left out of the header entirely):
//!
//! | column | meaning |
//! |---|---|
//! | `instance_type` | an EC2 type such as `m6i.xlarge`, or `fargate` for a Fargate rate |
//! | `region` | a region such as `eu-west-1` (not a zone) |
//! | `usd_per_hour` | the node's price, USD per hour; required for EC2 rows, empty for `fargate` |
//! | `lifecycle` | `on-demand` (default) or `spot`: a `spot` row sets the spot price instead of on-demand × the spot fraction |
//! | `arch` | `x86_64` or `arm64` (default: the table's, else `x86_64`; for `fargate`, which rate) |
//! | `vcpus`, `memory_gib` | the node's shape; required only for a type the embedded table does not know in any region |
//! | `usd_per_vcpu_hour`, `usd_per_gb_hour` | Fargate's rates; required for `fargate` rows, empty otherwise |
//! | `note` | free text, ignored |
//!
//! A row names one (type, region, lifecycle) — or (`fargate`, region, arch) —
//! once; a second row for the same is an error. Any error names the line and
//! the field at fault, e.g. `line 7, field usd_per_hour: not a number: 'abc'`.
//! Parsing never panics, whatever the input.
use serde::Serialize;

use super::{
    prices::{
        Arch, FargateRate, InstanceEntry, Lifecycle, PriceTable, Verification, norm, region_of_zone,
    },
    records::{self, TableError},
};

/// A malformed or unusable override file: the line and field at fault.
pub type OverrideError = TableError;

/// The example of the module documentation, kept parseable by a test.
pub const EXAMPLE: &str = "\
# Our prices: 1-year compute savings plan, spot where we know it.
instance_type,region,usd_per_hour,lifecycle,arch,vcpus,memory_gib,usd_per_vcpu_hour,usd_per_gb_hour,note
m6i.xlarge,us-east-1,0.1210,on-demand,,,,,,savings plan rate
m6i.xlarge,us-east-1,0.0700,spot,,,,,,
m7g.large,sa-east-1,0.1307,,arm64,2,8,,,a region the table lacks
fargate,eu-central-1,,,x86_64,,,0.04656,0.00511,from our bill
";

const COLUMNS: &[&str] = &[
    "instance_type",
    "region",
    "usd_per_hour",
    "lifecycle",
    "arch",
    "vcpus",
    "memory_gib",
    "usd_per_vcpu_hour",
    "usd_per_gb_hour",
    "note",
];

/// A parsed override file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Overrides {
    pub rows: Vec<OverrideRow>,
}

/// One row, with its line for later errors and reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverrideRow {
    pub line: usize,
    pub price: OverridePrice,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum OverridePrice {
    Ec2 {
        instance_type: String,
        region: String,
        lifecycle: Lifecycle,
        usd_per_hour: f64,
        arch: Option<Arch>,
        vcpus: Option<u32>,
        memory_gib: Option<f64>,
    },
    Fargate {
        region: String,
        arch: Arch,
        usd_per_vcpu_hour: f64,
        usd_per_gib_hour: f64,
    },
}

/// Parses an override file.
pub fn parse(text: &str) -> Result<Overrides, OverrideError> {
    let t = records::parse(text, COLUMNS, &["instance_type", "region"])?;
    let mut rows: Vec<OverrideRow> = Vec::with_capacity(t.rows.len());
    for row in &t.rows {
        let line = row.line;
        let instance_type = norm(t.text(row, "instance_type")?);
        let region = norm(t.text(row, "region")?);
        check_region(line, &region)?;
        let arch = match t.get(row, "arch") {
            None => None,
            Some(text) => Some(Arch::parse(text).ok_or_else(|| {
                records::field_error(
                    line,
                    "arch",
                    format!("not x86_64 or arm64: '{}'", records::printable(text)),
                )
            })?),
        };
        let price = if instance_type == "fargate" {
            for column in ["usd_per_hour", "lifecycle", "vcpus", "memory_gib"] {
                if t.get(row, column).is_some() {
                    return Err(records::field_error(
                        line,
                        column,
                        "must be empty on a fargate row".into(),
                    ));
                }
            }
            OverridePrice::Fargate {
                region,
                arch: arch.unwrap_or(Arch::X86_64),
                usd_per_vcpu_hour: required(&t, row, "usd_per_vcpu_hour", 10.0)?,
                usd_per_gib_hour: required(&t, row, "usd_per_gb_hour", 10.0)?,
            }
        } else {
            check_instance_type(line, &instance_type)?;
            for column in ["usd_per_vcpu_hour", "usd_per_gb_hour"] {
                if t.get(row, column).is_some() {
                    return Err(records::field_error(
                        line,
                        column,
                        "only fargate rows have this rate".into(),
                    ));
                }
            }
            let lifecycle = match t.get(row, "lifecycle") {
                None => Lifecycle::OnDemand,
                Some(text) => Lifecycle::parse(text).ok_or_else(|| {
                    records::field_error(
                        line,
                        "lifecycle",
                        format!("not on-demand or spot: '{}'", records::printable(text)),
                    )
                })?,
            };
            OverridePrice::Ec2 {
                instance_type,
                region,
                lifecycle,
                usd_per_hour: required(&t, row, "usd_per_hour", 1000.0)?,
                arch,
                vcpus: t.integer(row, "vcpus", 1, 1024)?.map(|v| v as u32),
                memory_gib: t.number(row, "memory_gib", 0.125, 32768.0)?,
            }
        };
        if let Some(first) = rows.iter().find(|r| same_target(&r.price, &price)) {
            let field = if matches!(price, OverridePrice::Fargate { .. }) {
                "region"
            } else {
                "instance_type"
            };
            return Err(records::field_error(
                line,
                field,
                format!("this price was already given on line {}", first.line),
            ));
        }
        rows.push(OverrideRow { line, price });
    }
    Ok(Overrides { rows })
}

impl Overrides {
    /// `table` with these prices taking precedence. Fails when a row names a
    /// type whose shape is known neither from the table nor from the row, or
    /// gives a spot price for a type with no on-demand price in that region.
    pub fn apply(&self, table: &PriceTable) -> Result<PriceTable, OverrideError> {
        let mut out = table.clone();
        let source = |line: usize| format!("override line {line}");
        // On-demand rows first, so a spot row can rely on one in any order.
        let mut ordered: Vec<&OverrideRow> = self.rows.iter().collect();
        ordered.sort_by_key(|r| {
            matches!(
                r.price,
                OverridePrice::Ec2 {
                    lifecycle: Lifecycle::Spot,
                    ..
                }
            )
        });
        for row in ordered {
            match &row.price {
                OverridePrice::Fargate {
                    region,
                    arch,
                    usd_per_vcpu_hour,
                    usd_per_gib_hour,
                } => {
                    out.set_fargate(FargateRate {
                        region: region.clone(),
                        arch: *arch,
                        usd_per_vcpu_hour: *usd_per_vcpu_hour,
                        usd_per_gib_hour: *usd_per_gib_hour,
                        verification: Verification::Override,
                        source: source(row.line),
                    });
                }
                OverridePrice::Ec2 {
                    instance_type,
                    region,
                    lifecycle,
                    usd_per_hour,
                    arch,
                    vcpus,
                    memory_gib,
                } => {
                    let existing = out.entry(instance_type, region).cloned();
                    let shape = out.shape(instance_type);
                    let mut entry = match (existing, lifecycle) {
                        (Some(e), _) => e,
                        (None, Lifecycle::Spot) => {
                            return Err(records::field_error(
                                row.line,
                                "lifecycle",
                                format!(
                                    "a spot price for {instance_type} in {region}, which has no on-demand price; add an on-demand row"
                                ),
                            ));
                        }
                        (None, Lifecycle::OnDemand) => {
                            let vcpus = vcpus
                                .or(shape.map(|s| s.1))
                                .ok_or_else(|| unknown_shape(row.line, "vcpus", instance_type))?;
                            let memory_gib =
                                memory_gib.or(shape.map(|s| s.2)).ok_or_else(|| {
                                    unknown_shape(row.line, "memory_gib", instance_type)
                                })?;
                            InstanceEntry {
                                instance_type: instance_type.clone(),
                                region: region.clone(),
                                arch: arch.or(shape.map(|s| s.0)).unwrap_or(Arch::X86_64),
                                vcpus,
                                memory_gib,
                                on_demand_usd_per_hour: *usd_per_hour,
                                spot_usd_per_hour: None,
                                verification: Verification::Override,
                                source: source(row.line),
                            }
                        }
                    };
                    if let Some(a) = arch {
                        entry.arch = *a;
                    }
                    if let Some(v) = vcpus {
                        entry.vcpus = *v;
                    }
                    if let Some(m) = memory_gib {
                        entry.memory_gib = *m;
                    }
                    match lifecycle {
                        Lifecycle::OnDemand => {
                            entry.on_demand_usd_per_hour = *usd_per_hour;
                            entry.verification = Verification::Override;
                            entry.source = source(row.line);
                        }
                        Lifecycle::Spot => entry.spot_usd_per_hour = Some(*usd_per_hour),
                    }
                    out.set_entry(entry);
                }
            }
        }
        Ok(out)
    }
}

fn same_target(a: &OverridePrice, b: &OverridePrice) -> bool {
    match (a, b) {
        (
            OverridePrice::Ec2 {
                instance_type: t1,
                region: r1,
                lifecycle: l1,
                ..
            },
            OverridePrice::Ec2 {
                instance_type: t2,
                region: r2,
                lifecycle: l2,
                ..
            },
        ) => t1 == t2 && r1 == r2 && l1 == l2,
        (
            OverridePrice::Fargate {
                region: r1,
                arch: a1,
                ..
            },
            OverridePrice::Fargate {
                region: r2,
                arch: a2,
                ..
            },
        ) => r1 == r2 && a1 == a2,
        _ => false,
    }
}

fn required(
    t: &records::Table<'_>,
    row: &records::Row<'_>,
    column: &str,
    max: f64,
) -> Result<f64, TableError> {
    if !t.has(column) {
        return Err(records::field_error(
            row.line,
            column,
            "required for this row, but the header lacks the column".into(),
        ));
    }
    t.required_number(row, column, 0.0, max)
}

fn unknown_shape(line: usize, field: &str, instance_type: &str) -> TableError {
    records::field_error(
        line,
        field,
        format!("required: the embedded table does not know {instance_type} in any region"),
    )
}

/// `family.size`: lower-case letters, digits and dashes either side of one dot.
fn check_instance_type(line: usize, text: &str) -> Result<(), TableError> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    match text.split_once('.') {
        Some((family, size)) if ok_part(family) && ok_part(size) && text.len() <= 40 => Ok(()),
        _ => Err(records::field_error(
            line,
            "instance_type",
            format!(
                "not an instance type like m6i.xlarge (or fargate): '{}'",
                records::printable(text)
            ),
        )),
    }
}

/// `xx-name-N`, e.g. `eu-west-1` or `us-gov-west-1`; a zone is named as such.
fn check_region(line: usize, text: &str) -> Result<(), TableError> {
    let parts: Vec<&str> = text.split('-').collect();
    let shaped = parts.len() >= 3
        && text.len() <= 32
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if shaped {
        return Ok(());
    }
    let message = match region_of_zone(text) {
        Some(region) => format!("'{text}' is a zone; give its region, {region}"),
        None => format!(
            "not a region like eu-west-1: '{}'",
            records::printable(text)
        ),
    };
    Err(records::field_error(line, "region", message))
}
