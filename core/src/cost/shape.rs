//! The instance shape of [`super::recommend`]: which instance type in the
//! region would hold the pod for less, Graviton included.
//!
//! A pod's cost on a type is its bottleneck share of the node,
//! `price × max(cpu ÷ usable vCPUs, memory ÷ usable GiB)`, with 95% of vCPUs
//! and 90% of memory usable (kubelet and system reservations, eviction
//! thresholds). The share is scale-free: it assumes other pods fill the
//! rest of the node as they do now, so it ranks shapes by how well their
//! CPU:memory ratio fits the pod. Burstable t3/t4g are skipped unless the
//! node already is one: GC-heavy work burns CPU credits.
use super::{
    DataWindow, GIB, HOURS_PER_MONTH,
    prices::NodePrice,
    recommend::{Context, Observation, Recommendation, Setting, Target, peak_confidence},
};

const USABLE_CPU: f64 = 0.95;
const USABLE_MEMORY: f64 = 0.90;

pub(super) fn shape(
    obs: &Observation,
    ctx: &Context<'_>,
    cpu: f64,
    memory_bytes: f64,
) -> Option<Recommendation> {
    let (table, region, current_type) = (ctx.prices?, ctx.region?, ctx.instance_type?);
    let current = table.price(current_type, region, ctx.lifecycle)?;
    let need_gib = memory_bytes / GIB;
    let share = |price: f64, vcpus: u32, gib: f64| {
        let (c, m) = (f64::from(vcpus) * USABLE_CPU, gib * USABLE_MEMORY);
        (cpu <= c && need_gib <= m).then(|| price * (cpu / c).max(need_gib / m))
    };
    let burstable = |t: &str| t.starts_with("t3.") || t.starts_with("t4g.");
    let current_cost = share(current.usd_per_hour, current.vcpus, current.memory_gib)
        .unwrap_or(current.usd_per_hour);
    let mut best: Option<(f64, &NodePrice)> = None;
    let mut best_same_arch: Option<(f64, &NodePrice)> = None;
    let looked_up;
    let region_prices = match ctx.region_prices {
        Some(p) => p,
        None => {
            looked_up = table.prices_in(region, ctx.lifecycle);
            &looked_up[..]
        }
    };
    for price in region_prices {
        if burstable(&price.instance_type) && !burstable(&current.instance_type) {
            continue;
        }
        let Some(cost) = share(price.usd_per_hour, price.vcpus, price.memory_gib) else {
            continue;
        };
        let better = |b: &Option<(f64, &NodePrice)>| {
            b.as_ref().is_none_or(|(bc, bp)| {
                cost < *bc - 1e-12 || ((cost - bc).abs() <= 1e-12 && price.vcpus < bp.vcpus)
            })
        };
        if price.arch == current.arch && better(&best_same_arch) {
            best_same_arch = Some((cost, price));
        }
        if better(&best) {
            best = Some((cost, price));
        }
    }
    let (cost, pick) = best?;
    if cost > current_cost * 0.97 || pick.instance_type == current.instance_type {
        return None;
    }
    let n = f64::from(obs.replicas);
    let mut confidence = peak_confidence(obs);
    let mut caveats = vec![format!(
        "a pod's share is price × max(cpu ÷ usable vCPUs, memory ÷ usable GiB), with {:.0}% of vCPUs and {:.0}% of memory usable; the saving assumes other pods fill the rest of the node as they do now",
        USABLE_CPU * 100.0,
        USABLE_MEMORY * 100.0
    )];
    if pick.arch != current.arch {
        confidence = confidence.lower();
        caveats.push(format!(
            "{} is {}: the image must be built for it (multi-arch), native dependencies (cgo, JNI, node-gyp) too, and per-vCPU performance differs — benchmark before moving",
            pick.instance_type, pick.arch.name()
        ));
        if let Some((c, p)) = &best_same_arch
            && p.instance_type != current.instance_type
            && *c < current_cost
        {
            caveats.push(format!(
                "staying on {}: {} saves ${:.2}/month",
                current.arch.name(),
                p.instance_type,
                (current_cost - c) * HOURS_PER_MONTH * n
            ));
        }
    }
    let family = |t: &str| t.split('.').next().unwrap_or(t).to_string();
    Some(Recommendation {
        target: Target::InstanceShape,
        change: format!(
            "{} ({}, {} vCPU, {} GiB) instead of {}",
            pick.instance_type,
            pick.arch.name(),
            pick.vcpus,
            pick.memory_gib,
            current.instance_type
        ),
        settings: vec![Setting {
            name: "node.kubernetes.io/instance-type".into(),
            value: pick.instance_type.clone(),
            was: Some(current.instance_type.clone()),
        }],
        monthly_saving_usd: (current_cost - cost) * HOURS_PER_MONTH * n,
        monthly_saving_range_usd: None,
        saving: super::recommend::SavingKind::Money,
        time_saving_share: None,
        confidence,
        window: DataWindow { seconds: 0.0 },
        model: format!(
            "pod of {:.2} vCPU and {:.2} GiB: ${:.4}/h on {} ({}) vs ${:.4}/h on {} ({}), {:?} prices in {region}, × 730 h × {} replica(s)",
            cpu,
            need_gib,
            current_cost,
            current.instance_type,
            family(&current.instance_type),
            cost,
            pick.instance_type,
            family(&pick.instance_type),
            ctx.lifecycle,
            obs.replicas
        ),
        caveats,
        memory_bytes: Vec::new(),
    })
}
