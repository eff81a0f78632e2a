//! Splitting a node's price between the workloads on it, the way the
//! established cost allocators do.
//!
//! # Method (OpenCost's)
//!
//! **Rates.** AWS sells a node for one hourly price, not per vCPU and per
//! GiB. OpenCost, given only a node's total price, splits it with default
//! relative prices of a vCPU-hour and a GiB-hour (`configs/default.json`
//! and `configs/aws.json`: `"CPU": "0.031611"`, `"RAM": "0.004237"`) in
//! `pkg/costmodel/costmodel.go`:
//!
//! ```text
//! cpuToRAMRatio = defaultCPU / defaultRAM            (= 7.4607...)
//! ramMultiple   = vcpus × cpuToRAMRatio + memoryGiB
//! ramPrice      = nodePrice / ramMultiple            (USD per GiB-hour)
//! cpuPrice      = ramPrice × cpuToRAMRatio           (USD per vCPU-hour)
//! ```
//!
//! so `vcpus × cpuPrice + memoryGiB × ramPrice = nodePrice` exactly, and an
//! m6i.xlarge at $0.192/h (4 vCPU, 16 GiB) gets $0.031247 per vCPU-hour and
//! $0.004188 per GiB-hour. [`NodeRates::split`] does this; every other
//! module prices CPU and memory with the same [`NodeRates`]. When the
//! per-resource rates are known instead (Fargate), [`NodeRates::explicit`]
//! takes them as they are.
//!
//! **Allocation.** Like OpenCost's allocation model, a workload is billed per
//! resource for `max(request, usage)` over the window:
//!
//! - CPU usage = CPU seconds ÷ window seconds (average cores);
//! - memory usage = average RSS;
//! - request = the pod's request, when known (else 0: billed on usage).
//!
//! The billed amount is reported in two parts: usage, and *requested but
//! unused* (`max(request, usage) − usage`: paid for, not used).
//!
//! **Idle.** Capacity that no workload used or requested is the node's idle
//! cost, per resource, kept apart from every workload.
//!
//! **Overcommit.** When Σ `max(request, usage)` exceeds the node's capacity
//! for a resource (usage above requests on a packed node), OpenCost would
//! report negative idle; we instead scale every workload's billed amount of
//! that resource down by `capacity ÷ Σ` (the same factor for all, so shares
//! stay proportional) and idle for that resource is zero. The factor is
//! reported (`cpu_scale`, `memory_scale`).
//!
//! **Invariant.** node price × hours = Σ workload costs + idle (+ the
//! "unpriced" remainder, which is zero under the split and non-zero only for
//! explicit rates that do not add up to the node's price, or a node with no
//! capacity). Tested with hand-computed cases, to the cent.
use serde::Serialize;

use super::{
    GIB, nonneg,
    prices::{FargateRate, NodePrice},
};

/// OpenCost's default price of a vCPU-hour (USD), used only for its ratio to
/// [`OPENCOST_DEFAULT_USD_PER_GIB_HOUR`].
pub const OPENCOST_DEFAULT_USD_PER_VCPU_HOUR: f64 = 0.031611;
/// OpenCost's default price of a GiB-hour of RAM (USD).
pub const OPENCOST_DEFAULT_USD_PER_GIB_HOUR: f64 = 0.004237;

/// A vCPU-hour costs this many GiB-hours (OpenCost's `cpuToRAMRatio`).
pub fn cpu_to_ram_ratio() -> f64 {
    OPENCOST_DEFAULT_USD_PER_VCPU_HOUR / OPENCOST_DEFAULT_USD_PER_GIB_HOUR
}

/// What a vCPU-hour and a GiB-hour cost on one node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NodeRates {
    pub usd_per_vcpu_hour: f64,
    pub usd_per_gib_hour: f64,
    pub method: RateMethod,
}

/// How the rates were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateMethod {
    /// The node's price split with OpenCost's default ratio.
    OpenCostSplit,
    /// Given per resource (Fargate, or the caller's own).
    Explicit,
}

impl NodeRates {
    /// OpenCost's split of a node's hourly price. A node with no capacity
    /// gets zero rates (its whole price is then "unpriced" in an allocation).
    pub fn split(node_usd_per_hour: f64, vcpus: f64, memory_gib: f64) -> NodeRates {
        let ratio = cpu_to_ram_ratio();
        let ram_multiple = nonneg(vcpus) * ratio + nonneg(memory_gib);
        let ram = if ram_multiple > 0.0 {
            nonneg(node_usd_per_hour) / ram_multiple
        } else {
            0.0
        };
        NodeRates {
            usd_per_vcpu_hour: ram * ratio,
            usd_per_gib_hour: ram,
            method: RateMethod::OpenCostSplit,
        }
    }

    /// The split of a priced node.
    pub fn from_price(price: &NodePrice) -> NodeRates {
        NodeRates::split(price.usd_per_hour, f64::from(price.vcpus), price.memory_gib)
    }

    /// Rates given per resource.
    pub fn explicit(usd_per_vcpu_hour: f64, usd_per_gib_hour: f64) -> NodeRates {
        NodeRates {
            usd_per_vcpu_hour: nonneg(usd_per_vcpu_hour),
            usd_per_gib_hour: nonneg(usd_per_gib_hour),
            method: RateMethod::Explicit,
        }
    }

    /// Fargate's rates.
    pub fn from_fargate(rate: &FargateRate) -> NodeRates {
        NodeRates::explicit(rate.usd_per_vcpu_hour, rate.usd_per_gib_hour)
    }

    /// USD for `cpu_seconds` of CPU time.
    pub fn cpu_seconds_cost(&self, cpu_seconds: f64) -> f64 {
        nonneg(cpu_seconds) / 3600.0 * self.usd_per_vcpu_hour
    }

    /// USD for holding `bytes` of memory for `hours`.
    pub fn memory_cost(&self, bytes: f64, hours: f64) -> f64 {
        nonneg(bytes) / GIB * self.usd_per_gib_hour * nonneg(hours)
    }

    /// USD for holding `cores` of CPU for `hours`.
    pub fn cpu_cost(&self, cores: f64, hours: f64) -> f64 {
        nonneg(cores) * self.usd_per_vcpu_hour * nonneg(hours)
    }
}

/// A node: its price and capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NodeCapacity {
    pub usd_per_hour: f64,
    pub vcpus: f64,
    pub memory_gib: f64,
    pub rates: NodeRates,
}

impl NodeCapacity {
    /// A node whose price is split the OpenCost way.
    pub fn new(usd_per_hour: f64, vcpus: f64, memory_gib: f64) -> NodeCapacity {
        NodeCapacity {
            usd_per_hour: nonneg(usd_per_hour),
            vcpus: nonneg(vcpus),
            memory_gib: nonneg(memory_gib),
            rates: NodeRates::split(usd_per_hour, vcpus, memory_gib),
        }
    }

    /// The node of a [`NodePrice`].
    pub fn from_price(price: &NodePrice) -> NodeCapacity {
        NodeCapacity::new(price.usd_per_hour, f64::from(price.vcpus), price.memory_gib)
    }
}

/// What one workload (container, pod, or workload on this node) did in the
/// window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadUsage<K> {
    pub key: K,
    /// CPU time used in the window.
    pub cpu_seconds: f64,
    /// Average resident set size over the window.
    pub rss_bytes_avg: f64,
    /// The CPU request (cores), when known.
    pub request_cpu_cores: Option<f64>,
    /// The memory request (bytes), when known.
    pub request_memory_bytes: Option<f64>,
}

/// One workload's share of the node's cost over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadCost<K> {
    pub key: K,
    /// Average cores used.
    pub usage_cores: f64,
    pub request_cores: f64,
    /// `max(request, usage)` cores, after any overcommit scaling.
    pub billed_cores: f64,
    pub usage_gib: f64,
    pub request_gib: f64,
    /// `max(request, usage)` GiB, after any overcommit scaling.
    pub billed_gib: f64,
    pub cpu_usage_cost: f64,
    /// CPU requested but not used.
    pub cpu_unused_request_cost: f64,
    pub memory_usage_cost: f64,
    /// Memory requested but not used.
    pub memory_unused_request_cost: f64,
}

impl<K> WorkloadCost<K> {
    pub fn cpu_cost(&self) -> f64 {
        self.cpu_usage_cost + self.cpu_unused_request_cost
    }

    pub fn memory_cost(&self) -> f64 {
        self.memory_usage_cost + self.memory_unused_request_cost
    }

    /// The workload's whole share.
    pub fn total(&self) -> f64 {
        self.cpu_cost() + self.memory_cost()
    }
}

/// A node's cost over a window, split between its workloads and idle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeAllocation<K> {
    pub hours: f64,
    /// Node price × hours.
    pub node_cost: f64,
    pub rates: NodeRates,
    /// Factor applied to every workload's billed cores (1 unless the node's
    /// CPU was overcommitted).
    pub cpu_scale: f64,
    /// Likewise for memory.
    pub memory_scale: f64,
    pub idle_cpu_cost: f64,
    pub idle_memory_cost: f64,
    /// Node cost the rates do not cover: zero under the OpenCost split.
    pub unpriced_cost: f64,
    pub workloads: Vec<WorkloadCost<K>>,
}

impl<K> NodeAllocation<K> {
    /// Capacity nobody used or requested.
    pub fn idle_cost(&self) -> f64 {
        self.idle_cpu_cost + self.idle_memory_cost
    }

    /// Σ workload costs.
    pub fn allocated_cost(&self) -> f64 {
        self.workloads.iter().map(WorkloadCost::total).sum()
    }
}

/// Splits a node's cost over `hours` between `workloads` and idle.
pub fn allocate<K: Clone>(
    node: &NodeCapacity,
    hours: f64,
    workloads: &[WorkloadUsage<K>],
) -> NodeAllocation<K> {
    let hours = nonneg(hours);
    let seconds = hours * 3600.0;
    let rates = node.rates;
    let vcpus = nonneg(node.vcpus);
    let memory_gib = nonneg(node.memory_gib);
    // (usage, request) per workload, per resource.
    let cpu: Vec<(f64, f64)> = workloads
        .iter()
        .map(|w| {
            let usage = if seconds > 0.0 {
                nonneg(w.cpu_seconds) / seconds
            } else {
                0.0
            };
            (usage, nonneg(w.request_cpu_cores.unwrap_or(0.0)))
        })
        .collect();
    let memory: Vec<(f64, f64)> = workloads
        .iter()
        .map(|w| {
            (
                nonneg(w.rss_bytes_avg) / GIB,
                nonneg(w.request_memory_bytes.unwrap_or(0.0)) / GIB,
            )
        })
        .collect();
    let cpu_scale = scale(&cpu, vcpus);
    let memory_scale = scale(&memory, memory_gib);
    let mut billed_cores_total = 0.0;
    let mut billed_gib_total = 0.0;
    let costs = workloads
        .iter()
        .zip(cpu.iter().zip(memory.iter()))
        .map(|(w, (&(cu, cr), &(mu, mr)))| {
            let billed_cores = cu.max(cr) * cpu_scale;
            let billed_gib = mu.max(mr) * memory_scale;
            billed_cores_total += billed_cores;
            billed_gib_total += billed_gib;
            WorkloadCost {
                key: w.key.clone(),
                usage_cores: cu,
                request_cores: cr,
                billed_cores,
                usage_gib: mu,
                request_gib: mr,
                billed_gib,
                cpu_usage_cost: rates.cpu_cost(cu * cpu_scale, hours),
                cpu_unused_request_cost: rates.cpu_cost((cr - cu).max(0.0) * cpu_scale, hours),
                memory_usage_cost: mu * memory_scale * rates.usd_per_gib_hour * hours,
                memory_unused_request_cost: (mr - mu).max(0.0)
                    * memory_scale
                    * rates.usd_per_gib_hour
                    * hours,
            }
        })
        .collect();
    let node_cost = nonneg(node.usd_per_hour) * hours;
    let idle_cpu_cost = rates.cpu_cost((vcpus - billed_cores_total).max(0.0), hours);
    let idle_memory_cost =
        (memory_gib - billed_gib_total).max(0.0) * rates.usd_per_gib_hour * hours;
    let priced = (vcpus * rates.usd_per_vcpu_hour + memory_gib * rates.usd_per_gib_hour) * hours;
    NodeAllocation {
        hours,
        node_cost,
        rates,
        cpu_scale,
        memory_scale,
        idle_cpu_cost,
        idle_memory_cost,
        unpriced_cost: node_cost - priced,
        workloads: costs,
    }
}

/// `capacity ÷ Σ max(usage, request)` when that is below 1, else 1.
fn scale(shares: &[(f64, f64)], capacity: f64) -> f64 {
    let total: f64 = shares.iter().map(|&(u, r)| u.max(r)).sum();
    if total > capacity && total > 0.0 {
        capacity / total
    } else {
        1.0
    }
}
