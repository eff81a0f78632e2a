//! The allocation method, with hand-computed cases: node price × hours is
//! always the sum of allocated costs plus idle, within a cent.
use super::Lcg;
use crate::cost::{
    GIB, Lifecycle, PriceTable,
    allocation::{
        NodeCapacity, NodeRates, OPENCOST_DEFAULT_USD_PER_GIB_HOUR,
        OPENCOST_DEFAULT_USD_PER_VCPU_HOUR, RateMethod, WorkloadUsage, allocate, cpu_to_ram_ratio,
    },
};

const CENT: f64 = 0.01;

fn close(a: f64, b: f64, eps: f64) -> bool {
    (a - b).abs() <= eps
}

/// A 4 vCPU / 16 GiB node with round rates: $0.04 per vCPU-hour and $0.005
/// per GiB-hour, so $0.16 + $0.08 = $0.24 per hour.
fn round_node() -> NodeCapacity {
    NodeCapacity {
        usd_per_hour: 0.24,
        vcpus: 4.0,
        memory_gib: 16.0,
        rates: NodeRates::explicit(0.04, 0.005),
    }
}

fn w(
    key: &'static str,
    cores: f64,
    hours: f64,
    rss_gib: f64,
    req_cores: Option<f64>,
    req_gib: Option<f64>,
) -> WorkloadUsage<&'static str> {
    WorkloadUsage {
        key,
        cpu_seconds: cores * hours * 3600.0,
        rss_bytes_avg: rss_gib * GIB,
        request_cpu_cores: req_cores,
        request_memory_bytes: req_gib.map(|g| g * GIB),
    }
}

fn assert_balances<K>(a: &crate::cost::NodeAllocation<K>) {
    let sum = a.allocated_cost() + a.idle_cost() + a.unpriced_cost;
    assert!(
        close(a.node_cost, sum, CENT),
        "node {} != allocated {} + idle {} + unpriced {}",
        a.node_cost,
        a.allocated_cost(),
        a.idle_cost(),
        a.unpriced_cost
    );
}

#[test]
fn opencost_split_matches_hand_computation() {
    // cpuToRAMRatio = 0.031611 / 0.004237 = 7.460703327826292
    assert!(close(cpu_to_ram_ratio(), 7.460703327826292, 1e-12));
    assert_eq!(OPENCOST_DEFAULT_USD_PER_VCPU_HOUR, 0.031611);
    assert_eq!(OPENCOST_DEFAULT_USD_PER_GIB_HOUR, 0.004237);
    // m6i.xlarge, $0.192/h, 4 vCPU, 16 GiB:
    // ramMultiple = 4 × 7.4607033 + 16 = 45.8428133
    // ram = 0.192 / 45.8428133 = 0.0041882246; cpu = ram × 7.4607033 = 0.0312471015
    let r = NodeRates::split(0.192, 4.0, 16.0);
    assert_eq!(r.method, RateMethod::OpenCostSplit);
    assert!(close(r.usd_per_gib_hour, 0.004188224633950453, 1e-12));
    assert!(close(r.usd_per_vcpu_hour, 0.031247101464198197, 1e-12));
    assert!(close(
        4.0 * r.usd_per_vcpu_hour + 16.0 * r.usd_per_gib_hour,
        0.192,
        1e-12
    ));
    // m7g.large, $0.0816/h, 2 vCPU, 8 GiB: ram 0.0035599909, cpu 0.0265600362
    let r = NodeRates::split(0.0816, 2.0, 8.0);
    assert!(close(r.usd_per_gib_hour, 0.003559990938857885, 1e-12));
    assert!(close(r.usd_per_vcpu_hour, 0.02656003624456847, 1e-12));
}

#[test]
fn split_adds_back_to_the_price_of_every_embedded_node() {
    let table = PriceTable::embedded();
    for e in table.entries() {
        for lifecycle in [Lifecycle::OnDemand, Lifecycle::Spot] {
            let p = table.price(&e.instance_type, &e.region, lifecycle).unwrap();
            let r = NodeRates::from_price(&p);
            let back = f64::from(p.vcpus) * r.usd_per_vcpu_hour + p.memory_gib * r.usd_per_gib_hour;
            assert!(close(back, p.usd_per_hour, 1e-12), "{p}");
            // A vCPU-hour always costs ~7.46 GiB-hours.
            assert!(close(
                r.usd_per_vcpu_hour / r.usd_per_gib_hour,
                cpu_to_ram_ratio(),
                1e-9
            ));
        }
    }
}

#[test]
fn requests_over_usage_are_billed_as_unused_and_idle_is_kept_apart() {
    // 10 hours: node cost $2.40.
    // a: uses 1 core (requests 0.5), 2 GiB (requests 4).
    //    CPU billed 1.0 core: usage 1.0 × 0.04 × 10 = $0.40, unused $0.
    //    memory billed 4 GiB: usage 2 × 0.005 × 10 = $0.10, unused 2 × 0.005 × 10 = $0.10.
    //    total $0.60.
    // b: uses 0.5 core (requests 2), 6 GiB (requests 4).
    //    CPU billed 2 cores: usage 0.5 × 0.4 = $0.20, unused 1.5 × 0.4 = $0.60.
    //    memory billed 6 GiB (usage over request): usage 6 × 0.05 = $0.30.
    //    total $1.10.
    // idle: CPU 4 − 3 = 1 core × 0.4 = $0.40; memory 16 − 10 = 6 GiB × 0.05 = $0.30.
    // 0.60 + 1.10 + 0.40 + 0.30 = 2.40.
    let a = allocate(
        &round_node(),
        10.0,
        &[
            w("a", 1.0, 10.0, 2.0, Some(0.5), Some(4.0)),
            w("b", 0.5, 10.0, 6.0, Some(2.0), Some(4.0)),
        ],
    );
    assert!(close(a.node_cost, 2.40, 1e-12));
    let (x, y) = (&a.workloads[0], &a.workloads[1]);
    assert!(close(x.cpu_usage_cost, 0.40, 1e-9) && close(x.cpu_unused_request_cost, 0.0, 1e-9));
    assert!(
        close(x.memory_usage_cost, 0.10, 1e-9) && close(x.memory_unused_request_cost, 0.10, 1e-9)
    );
    assert!(close(x.total(), 0.60, 1e-9));
    assert!(close(y.cpu_usage_cost, 0.20, 1e-9) && close(y.cpu_unused_request_cost, 0.60, 1e-9));
    assert!(
        close(y.memory_usage_cost, 0.30, 1e-9) && close(y.memory_unused_request_cost, 0.0, 1e-9)
    );
    assert!(close(y.total(), 1.10, 1e-9));
    assert!(close(a.idle_cpu_cost, 0.40, 1e-9) && close(a.idle_memory_cost, 0.30, 1e-9));
    assert_eq!((a.cpu_scale, a.memory_scale), (1.0, 1.0));
    assert!(close(a.unpriced_cost, 0.0, 1e-12));
    assert_balances(&a);
}

#[test]
fn overcommitted_cpu_is_scaled_down_proportionally() {
    // a uses 3 cores with no request; b requests 3 and uses 1: Σ max = 6 > 4,
    // so both are scaled by 4/6. a: 2 cores × 0.4 = $0.80 (all usage).
    // b: 2 cores: usage 1 × 2/3 × 0.4 = $0.2667, unused 2 × 2/3 × 0.4 = $0.5333.
    // memory: 1 GiB each, $0.05 each; idle CPU $0, idle memory 14 × 0.05 = $0.70.
    // 0.80 + 0.05 + 0.80 + 0.05 + 0.70 = 2.40.
    let a = allocate(
        &round_node(),
        10.0,
        &[
            w("a", 3.0, 10.0, 1.0, None, None),
            w("b", 1.0, 10.0, 1.0, Some(3.0), None),
        ],
    );
    assert!(close(a.cpu_scale, 4.0 / 6.0, 1e-12));
    assert!(close(a.workloads[0].cpu_cost(), 0.80, 1e-9));
    assert!(close(a.workloads[1].cpu_usage_cost, 0.8 / 3.0, 1e-9));
    assert!(close(
        a.workloads[1].cpu_unused_request_cost,
        1.6 / 3.0,
        1e-9
    ));
    assert!(close(
        a.workloads[0].billed_cores + a.workloads[1].billed_cores,
        4.0,
        1e-12
    ));
    assert!(close(a.idle_cpu_cost, 0.0, 1e-12));
    assert!(close(a.idle_memory_cost, 0.70, 1e-9));
    assert_balances(&a);
}

#[test]
fn overcommitted_memory_is_scaled_down_proportionally() {
    // 10 GiB used + 10 GiB requested-and-unused... Σ max = 20 > 16 → × 0.8:
    // a 8 GiB ($0.40), b 8 GiB of which usage 2 × 0.8 = 1.6 ($0.08), unused 6.4 ($0.32).
    let a = allocate(
        &round_node(),
        10.0,
        &[
            w("a", 0.0, 10.0, 10.0, None, None),
            w("b", 0.0, 10.0, 2.0, None, Some(10.0)),
        ],
    );
    assert!(close(a.memory_scale, 0.8, 1e-12));
    assert!(close(a.workloads[0].memory_cost(), 0.40, 1e-9));
    assert!(close(a.workloads[1].memory_usage_cost, 0.08, 1e-9));
    assert!(close(a.workloads[1].memory_unused_request_cost, 0.32, 1e-9));
    assert!(close(a.idle_memory_cost, 0.0, 1e-12));
    assert!(close(a.idle_cpu_cost, 1.60, 1e-9));
    assert_balances(&a);
}

#[test]
fn an_empty_node_is_all_idle() {
    let a = allocate::<&str>(&round_node(), 10.0, &[]);
    assert!(close(a.idle_cpu_cost, 1.60, 1e-9) && close(a.idle_memory_cost, 0.80, 1e-9));
    assert!(close(a.idle_cost(), 2.40, 1e-9));
    assert_eq!(a.allocated_cost(), 0.0);
    // And with workloads that did nothing.
    let a = allocate(
        &round_node(),
        10.0,
        &[w("idle", 0.0, 10.0, 0.0, None, None)],
    );
    assert!(close(a.idle_cost(), 2.40, 1e-9));
    assert_balances(&a);
}

#[test]
fn opencost_split_node_balances_with_a_real_price() {
    // m6i.xlarge on-demand in us-east-1 for 24 h: $0.192 × 24 = $4.608.
    let table = PriceTable::embedded();
    let price = table
        .price("m6i.xlarge", "us-east-1", Lifecycle::OnDemand)
        .unwrap();
    let node = NodeCapacity::from_price(&price);
    let a = allocate(
        &node,
        24.0,
        &[
            w("api", 1.2, 24.0, 3.5, Some(1.0), Some(4.0)),
            w("batch", 2.5, 24.0, 9.0, None, Some(8.0)),
        ],
    );
    assert!(close(a.node_cost, 4.608, 1e-9));
    assert!(close(a.unpriced_cost, 0.0, 1e-9));
    // api: 1.2 cores × 0.0312471 × 24 = $0.89992; 4 GiB × 0.00418822 × 24 = $0.40207.
    assert!(close(
        a.workloads[0].cpu_cost(),
        1.2 * 0.031247101464198197 * 24.0,
        1e-9
    ));
    assert!(close(
        a.workloads[0].memory_cost(),
        4.0 * 0.004188224633950453 * 24.0,
        1e-9
    ));
    assert_balances(&a);
}

#[test]
fn degenerate_inputs_do_not_break_the_invariant() {
    let node = round_node();
    // Zero, negative and non-finite hours: nothing is billed.
    for hours in [0.0, -5.0, f64::NAN, f64::INFINITY] {
        let a = allocate(&node, hours, &[w("a", 1.0, 1.0, 1.0, Some(1.0), Some(1.0))]);
        assert_eq!(a.node_cost, 0.0);
        assert_eq!(a.allocated_cost(), 0.0);
        assert_balances(&a);
    }
    // NaN and negative usage are treated as zero.
    let bad = WorkloadUsage {
        key: "bad",
        cpu_seconds: f64::NAN,
        rss_bytes_avg: -1.0,
        request_cpu_cores: Some(f64::NAN),
        request_memory_bytes: Some(f64::NEG_INFINITY),
    };
    let a = allocate(&node, 1.0, &[bad]);
    assert_eq!(a.allocated_cost(), 0.0);
    assert_balances(&a);
    // A node with no capacity: its whole price is unpriced, nothing breaks.
    let a = allocate(
        &NodeCapacity::new(0.5, 0.0, 0.0),
        2.0,
        &[w("a", 1.0, 2.0, 1.0, None, None)],
    );
    assert!(close(a.unpriced_cost, 1.0, 1e-12));
    assert_eq!(a.allocated_cost(), 0.0);
    assert_balances(&a);
    // Memory-only pricing when a node reports no memory.
    let r = NodeRates::split(0.1, 2.0, 0.0);
    assert!(close(2.0 * r.usd_per_vcpu_hour, 0.1, 1e-12));
}

#[test]
fn random_nodes_and_workloads_always_balance_to_the_cent() {
    let table = PriceTable::embedded();
    let entries: Vec<_> = table.entries().collect();
    let mut rng = Lcg(7);
    for _ in 0..2000 {
        let e = entries[(rng.next_u64() as usize) % entries.len()];
        let lifecycle = if rng.unit() < 0.3 {
            Lifecycle::Spot
        } else {
            Lifecycle::OnDemand
        };
        let price = table.price(&e.instance_type, &e.region, lifecycle).unwrap();
        let node = NodeCapacity::from_price(&price);
        let hours = rng.range(0.01, 24.0 * 31.0);
        let n = (rng.next_u64() % 12) as usize;
        let workloads: Vec<WorkloadUsage<usize>> = (0..n)
            .map(|i| {
                // Up to 3× the node in total: overcommit happens often.
                let cores = rng.range(0.0, 3.0 * node.vcpus / n.max(1) as f64);
                WorkloadUsage {
                    key: i,
                    cpu_seconds: cores * hours * 3600.0,
                    rss_bytes_avg: rng.range(0.0, 3.0 * node.memory_gib / n.max(1) as f64) * GIB,
                    request_cpu_cores: (rng.unit() < 0.6)
                        .then(|| rng.range(0.0, 2.0 * node.vcpus / n.max(1) as f64)),
                    request_memory_bytes: (rng.unit() < 0.6)
                        .then(|| rng.range(0.0, 2.0 * node.memory_gib / n.max(1) as f64) * GIB),
                }
            })
            .collect();
        let a = allocate(&node, hours, &workloads);
        assert!(close(a.node_cost, price.usd_per_hour * hours, 1e-6));
        assert_balances(&a);
        assert!(a.idle_cpu_cost >= 0.0 && a.idle_memory_cost >= 0.0);
        assert!(a.workloads.iter().all(|c| c.total() >= 0.0));
        let billed: f64 = a.workloads.iter().map(|c| c.billed_cores).sum();
        assert!(billed <= node.vcpus + 1e-9);
    }
}
