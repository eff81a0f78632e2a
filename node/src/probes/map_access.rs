//! Typed access to the programs' maps.
use agent_common::{ProcRecord, StackKey, ThreadSamples, control, drop_kind, maps};
use aya::{
    Pod,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf, StackTraceMap},
};

use super::{ProbeError, Probes};

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> ProbeError {
    move |source| ProbeError::Map { name, source }
}

impl Probes {
    fn map(&self, name: &'static str) -> Result<&aya::maps::Map, ProbeError> {
        self.ebpf.map(name).ok_or(ProbeError::NoMap(name))
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, ProbeError> {
        self.ebpf.map_mut(name).ok_or(ProbeError::NoMap(name))
    }

    fn hash<K: Pod, V: Pod>(
        &self,
        name: &'static str,
    ) -> Result<HashMap<&MapData, K, V>, ProbeError> {
        HashMap::try_from(self.map(name)?).map_err(map_err(name))
    }

    fn hash_mut<K: Pod, V: Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, ProbeError> {
        HashMap::try_from(self.map_mut(name)?).map_err(map_err(name))
    }

    /// Per-thread CPU samples, keyed by tid.
    pub fn threads(&self) -> Result<HashMap<&MapData, u32, ThreadSamples>, ProbeError> {
        self.hash(maps::THREADS)
    }

    /// Per-thread samples, writable (userspace removes entries of dead threads).
    pub fn threads_mut(&mut self) -> Result<HashMap<&mut MapData, u32, ThreadSamples>, ProbeError> {
        self.hash_mut(maps::THREADS)
    }

    /// Per-process records, keyed by tgid.
    pub fn procs(&self) -> Result<HashMap<&MapData, u32, ProcRecord>, ProbeError> {
        self.hash(maps::PROCS)
    }

    /// Per-process records, writable (userspace removes entries of dead processes).
    pub fn procs_mut(&mut self) -> Result<HashMap<&mut MapData, u32, ProcRecord>, ProbeError> {
        self.hash_mut(maps::PROCS)
    }

    /// Processes whose user stacks are sampled.
    pub fn stack_tgids_mut(&mut self) -> Result<HashMap<&mut MapData, u32, u8>, ProbeError> {
        self.hash_mut(maps::STACK_TGIDS)
    }

    /// Flips the stack-count slot the sampler writes; returns the slot it
    /// wrote until now, which userspace then drains.
    pub fn flip_stack_slot(&mut self) -> Result<u32, ProbeError> {
        let mut array: Array<&mut MapData, u32> =
            Array::try_from(self.map_mut(maps::CONTROL)?).map_err(map_err(maps::CONTROL))?;
        let old = array
            .get(&control::STACK_SLOT, 0)
            .map_err(map_err(maps::CONTROL))?;
        array
            .set(control::STACK_SLOT, 1 - old.min(1), 0)
            .map_err(map_err(maps::CONTROL))?;
        Ok(old.min(1))
    }

    /// Samples the user stacks of every process (`true`), or only of those
    /// in `STACK_TGIDS`.
    pub fn set_stack_all(&mut self, all: bool) -> Result<(), ProbeError> {
        let mut array: Array<&mut MapData, u32> =
            Array::try_from(self.map_mut(maps::CONTROL)?).map_err(map_err(maps::CONTROL))?;
        array
            .set(control::STACK_ALL, u32::from(all), 0)
            .map_err(map_err(maps::CONTROL))
    }

    /// Stack sample counts of one slot, writable (drained each tick).
    pub fn stack_counts_mut(
        &mut self,
        slot: u32,
    ) -> Result<HashMap<&mut MapData, StackKey, u64>, ProbeError> {
        self.hash_mut(if slot == 0 {
            maps::STACK_COUNTS_0
        } else {
            maps::STACK_COUNTS_1
        })
    }

    /// User stacks by id.
    pub fn stacks_mut(&mut self) -> Result<StackTraceMap<&mut MapData>, ProbeError> {
        StackTraceMap::try_from(self.map_mut(maps::STACKS)?).map_err(map_err(maps::STACKS))
    }

    /// Loss counters by `agent_common::drop_kind`, summed over CPUs.
    pub fn drops(&self) -> Result<[u64; drop_kind::COUNT as usize], ProbeError> {
        let array: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.map(maps::DROPS)?).map_err(map_err(maps::DROPS))?;
        let mut totals = [0u64; drop_kind::COUNT as usize];
        for (kind, total) in totals.iter_mut().enumerate() {
            *total = array
                .get(&(kind as u32), 0)
                .map_err(map_err(maps::DROPS))?
                .iter()
                .sum();
        }
        Ok(totals)
    }

    /// Takes the exec/exit ring buffer out of the object; call once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let map = self
            .ebpf
            .take_map(maps::EVENTS)
            .ok_or(ProbeError::NoMap(maps::EVENTS))?;
        RingBuf::try_from(map).map_err(map_err(maps::EVENTS))
    }
}
