//! Processes added up into one row: per container (else cgroup), or per
//! pod (else container, else cgroup), with the group's own verdict from the
//! merged GC signals.
use std::{collections::HashMap, sync::Arc};

use super::{
    Entry, MAX_GROUP_PIDS, RowId, RowKind, StackSummary, Stacks, Symbol, TOP_SYMBOLS, ThreadRow,
    cgroup_tail, sanitize, short_id,
};
use tally_core::{
    gc::{self, GcSignals},
    model::{Counters, RuntimeSettings, Window, pressure::CgroupPressure},
};

/// Processes added up into one row.
struct Group {
    id: RowId,
    name: String,
    busiest: f64,
    /// Kubernetes names, where known: `namespace/pod/container` and
    /// `namespace/pod`.
    pod_names: Option<(String, String)>,
    procs: u32,
    exited: u32,
    seconds: f64,
    delta: Counters,
    signals: GcSignals,
    rss: u64,
    container_id: Option<String>,
    pod_uid: Option<String>,
    cgroup_path: String,
    /// By name: threads, samples (the order), CPU seconds, GC.
    threads: HashMap<String, (u32, u64, f64, bool)>,
    stacks: Option<HashMap<Arc<str>, (u64, bool)>>,
    stack_samples: u64,
    /// Members, for recording their stacks (bounded).
    pids: Vec<u32>,
    /// The settings of its busiest process that has them, and its CPU.
    settings: Option<(f64, Arc<RuntimeSettings>)>,
    /// Its container's pressure (a pod's: its most stalled container's).
    pressure: Option<Arc<CgroupPressure>>,
}

impl Group {
    fn add(&mut self, w: &Window, stacks: Option<&StackSummary>) {
        self.procs += 1;
        if self.pids.len() < MAX_GROUP_PIDS {
            self.pids.push(w.key.tgid);
        }
        self.exited += u32::from(w.exited);
        self.seconds = self.seconds.max(w.seconds);
        self.delta = self.delta.add(&w.delta);
        self.signals.merge(&w.gc_signals());
        self.rss += w.rss_bytes;
        let stall = |p: &Option<Arc<CgroupPressure>>| {
            p.as_ref().and_then(|p| p.memory).map(|m| m.delta.some_us)
        };
        if w.pressure.is_some() && stall(&w.pressure) >= stall(&self.pressure) {
            self.pressure.clone_from(&w.pressure);
        }
        if self.pod_names.is_none()
            && let Some(p) = w.pod.as_ref()
        {
            self.pod_names = Some((p.display_name(), format!("{}/{}", p.namespace, p.pod)));
        }
        if let Some(st) = &w.settings
            && self
                .settings
                .as_ref()
                .is_none_or(|(cpu, _)| w.cpu_seconds > *cpu)
        {
            self.settings = Some((w.cpu_seconds, st.clone()));
        }
        if w.cpu_seconds > self.busiest || self.name.is_empty() {
            self.busiest = w.cpu_seconds;
            self.name.clone_from(&w.comm);
        }
        for g in &w.threads {
            let t = self
                .threads
                .entry(g.name.clone())
                .or_insert((0, 0, 0.0, g.gc));
            t.0 += g.threads;
            t.1 += g.samples;
            t.2 += g.cpu_seconds;
        }
        if let Some(s) = stacks {
            self.stack_samples += s.samples;
            let merged = self.stacks.get_or_insert_with(HashMap::new);
            for sym in &s.top {
                let m = merged.entry(sym.name.clone()).or_insert((0, sym.gc));
                m.0 += sym.samples;
            }
        }
    }

    fn entry(self, label: String, stacks_on: bool) -> Entry {
        let mut e = Entry::blank(self.id, RowKind::Group);
        e.pod_name = self.pod_names.map(|(full, pod)| match e.id {
            RowId::Pod(_) => pod,
            _ => full,
        });
        e.procs = self.procs;
        e.pids = self.pids;
        e.set_name(&label);
        e.container_id = self.container_id;
        e.pod_uid = self.pod_uid;
        e.cgroup_path = sanitize(&self.cgroup_path);
        e.runtime = self.signals.runtime;
        e.settings = self.settings.map(|(_, s)| s);
        let secs = self.seconds.max(1e-9);
        e.cpu_pct = 100.0 * self.signals.cpu_seconds / secs;
        e.gc_pct = 100.0 * self.signals.gc_cpu_share();
        // As `model::containers` does: the cgroup's stall is the group's.
        let mut signals = self.signals;
        signals.memory_stall_seconds = self
            .pressure
            .as_ref()
            .and_then(|p| p.memory_stall_seconds());
        let verdict = gc::classify(&signals);
        e.set_verdict(Some(&verdict));
        e.set_pressure(self.pressure, self.seconds);
        e.set_rates(&self.delta, self.seconds);
        e.rss = self.rss;
        e.exited = self.exited == self.procs;
        let mut threads: Vec<(String, (u32, u64, f64, bool))> = self.threads.into_iter().collect();
        threads.sort_by(|a, b| b.1.1.cmp(&a.1.1).then_with(|| a.0.cmp(&b.0)));
        e.threads = threads
            .into_iter()
            .map(|(name, (threads, _, cpu_seconds, gc))| ThreadRow {
                name: sanitize(&name),
                threads,
                cpu_pct: 100.0 * cpu_seconds / secs,
                gc,
            })
            .collect();
        e.stacks = match self.stacks {
            Some(map) => {
                let mut top: Vec<Symbol> = map
                    .into_iter()
                    .map(|(name, (samples, gc))| Symbol { name, samples, gc })
                    .collect();
                top.sort_by(|a, b| b.samples.cmp(&a.samples).then_with(|| a.name.cmp(&b.name)));
                top.truncate(TOP_SYMBOLS);
                Stacks::Sampled(StackSummary {
                    samples: self.stack_samples,
                    top,
                })
            }
            None if stacks_on => Stacks::NotSampled,
            None => Stacks::Off,
        };
        e.fill_search();
        e
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupBy {
    Container,
    Pod,
}

pub(super) fn group_rows(
    windows: &[Window],
    stacks: Option<&HashMap<u32, StackSummary>>,
    by: GroupBy,
) -> Vec<Entry> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<RowId, usize> = HashMap::new();
    for w in windows {
        let container = w.cgroup.as_ref().and_then(|c| c.container.as_ref());
        let path = w.cgroup.as_ref().map_or("", |c| c.path.as_str());
        let pod = container.and_then(|c| c.pod_uid.as_deref());
        let id = match (by, pod, container) {
            (GroupBy::Pod, Some(uid), _) => RowId::Pod(Arc::from(uid)),
            (_, _, Some(c)) => RowId::Container(Arc::from(c.id.as_str())),
            _ => RowId::Cgroup(Arc::from(path)),
        };
        let i = *index.entry(id.clone()).or_insert_with(|| {
            groups.push(Group {
                id,
                name: String::new(),
                busiest: 0.0,
                pod_names: None,
                procs: 0,
                exited: 0,
                seconds: 0.0,
                delta: Counters::default(),
                signals: GcSignals::default(),
                rss: 0,
                container_id: container
                    .filter(|_| by == GroupBy::Container || pod.is_none())
                    .map(|c| c.id.clone()),
                pod_uid: pod.map(str::to_owned),
                cgroup_path: path.to_owned(),
                settings: None,
                pressure: None,
                threads: HashMap::new(),
                stacks: None,
                stack_samples: 0,
                pids: Vec::new(),
            });
            groups.len() - 1
        });
        let st = stacks.and_then(|s| s.get(&w.key.tgid));
        groups[i].add(w, st);
    }
    groups
        .into_iter()
        .map(|g| {
            let label = match (&g.id, &g.pod_names) {
                (RowId::Container(_), Some((full, _))) => full.clone(),
                (RowId::Pod(_), Some((_, pod))) => pod.clone(),
                (RowId::Container(id), None) => format!("{}/{}", g.name, short_id(id)),
                (RowId::Pod(uid), None) => format!("{}/pod-{}", g.name, short_id(uid)),
                (RowId::Cgroup(path), _) => cgroup_tail(path).to_owned(),
                _ => g.name.clone(),
            };
            g.entry(label, stacks.is_some())
        })
        .collect()
}
