//! Container identity from a cgroup v2 path (pure logic, no I/O).
//!
//! The only thing every runtime agrees on is that a container's processes live in
//! a cgroup whose last name component carries the 64-hex container id. Around it,
//! each runtime and cgroup driver spells things differently. Layouts known here:
//!
//! | runtime / driver           | example                                                                  |
//! |----------------------------|--------------------------------------------------------------------------|
//! | containerd, systemd        | `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope` |
//! | CRI-O, systemd             | `/kubepods.slice/kubepods-pod<uid_>.slice/crio-<id>.scope`              |
//! | containerd, cgroupfs       | `/kubepods/besteffort/pod<uid>/<id>`                                     |
//! | CRI-O, cgroupfs            | `/kubepods/burstable/pod<uid>/crio-<id>`                                 |
//! | docker, systemd            | `/system.slice/docker-<id>.scope`                                        |
//! | docker, cgroupfs           | `/docker/<id>`                                                           |
//! | podman, systemd            | `/machine.slice/libpod-<id>.scope`                                       |
//! | podman, cgroupfs           | `/libpod_parent/libpod-<id>`                                             |
//! | dockershim, systemd        | `/kubepods.slice/kubepods-pod<uid_>.slice/docker-<id>.scope`             |
//!
//! `<uid_>` is the pod UID with `_` for `-`, because `-` separates levels in
//! systemd unit names. The deepest container segment wins, so processes in a
//! sub-cgroup of a container (`…/cri-containerd-<id>.scope/init.scope`) still
//! map to it. `..` and empty segments are skipped: a cgroup namespace or a v2
//! hierarchy mounted at `/sys/fs/cgroup/unified` yields paths like `/../../x`.

/// Container runtime that created a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    Podman,
}

/// How the cgroup tree is laid out (kubelet's --cgroup-driver, or docker's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    Systemd,
    Cgroupfs,
}

/// Kubernetes QoS class, from the kubepods level of the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ContainerInfo {
    pub runtime: Runtime,
    pub driver: Driver,
    /// The full container id: 64 lowercase hex characters.
    pub id: String,
    /// Pod UID with dashes (systemd paths spell it with underscores), when the path is under kubepods.
    pub pod_uid: Option<String>,
    pub qos: Option<QosClass>,
}

/// Parses a cgroup v2 path as found in /proc/<pid>/cgroup ("0::<path>") or relative to the cgroup2 mount.
/// Returns None for paths that are not a container (systemd services, user slices, the root, pod-level cgroups without a container, conmon, etc.).
pub fn parse(path: &str) -> Option<ContainerInfo> {
    // Accept a whole /proc/<pid>/cgroup line too, so callers need not strip it.
    let path = path
        .strip_prefix("0::")
        .unwrap_or(path)
        .trim_end_matches(['\n', '\r']);
    let segs: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .collect();

    // Deepest first: anything below the container cgroup is still that container.
    let (idx, runtime, driver, id) = (0..segs.len())
        .rev()
        .find_map(|i| container_segment(&segs[..i], segs[i]).map(|(r, d, id)| (i, r, d, id)))?;

    // The pod is the nearest ancestor that looks like one; QoS comes from its level.
    let ancestors = &segs[..idx];
    let pod = (0..ancestors.len())
        .rev()
        .find_map(|i| pod_segment(&ancestors[..i], ancestors[i]));
    let (pod_uid, qos) = pod.map_or((None, None), |(uid, qos)| (uid, Some(qos)));
    Some(ContainerInfo {
        runtime,
        driver,
        id: id.to_owned(),
        pod_uid,
        qos,
    })
}

/// Recognises one path segment as a container cgroup, given the segments above it.
fn container_segment<'a>(ancestors: &[&str], seg: &'a str) -> Option<(Runtime, Driver, &'a str)> {
    if let Some(unit) = seg.strip_suffix(".scope") {
        // systemd driver: the runtime is always spelled out as a unit-name prefix.
        // `crio-conmon-<id>` and `libpod-conmon-<id>` fail the hex check below.
        const PREFIXES: [(&str, Runtime); 4] = [
            ("cri-containerd-", Runtime::Containerd),
            ("crio-", Runtime::CriO),
            ("docker-", Runtime::Docker),
            ("libpod-", Runtime::Podman),
        ];
        return PREFIXES.iter().find_map(|&(prefix, runtime)| {
            let id = unit.strip_prefix(prefix)?;
            is_container_id(id).then_some((runtime, Driver::Systemd, id))
        });
    }
    for (prefix, runtime) in [("crio-", Runtime::CriO), ("libpod-", Runtime::Podman)] {
        if let Some(id) = seg.strip_prefix(prefix) {
            return is_container_id(id).then_some((runtime, Driver::Cgroupfs, id));
        }
    }
    if !is_container_id(seg) {
        return None;
    }
    // A bare id carries no runtime name, so it is read from the context.
    // Docker's own cgroupfs parent is `docker` (also for docker-in-docker inside a pod).
    // Under kubepods the cgroupfs layout has no runtime prefix at all, so containerd
    // and dockershim/cri-dockerd look the same; containerd is the default (EKS, GKE,
    // AKS, kubeadm since dockershim's removal), so it is the better guess.
    // Anything else is an unknown tree where a 64-hex name may not be a container.
    let runtime = if ancestors.last() == Some(&"docker") {
        Runtime::Docker
    } else if ancestors.iter().any(|a| is_kubepods(a)) {
        Runtime::Containerd
    } else {
        return None;
    };
    Some((runtime, Driver::Cgroupfs, seg))
}

/// Recognises a pod-level cgroup; returns its validated UID (if any) and QoS class.
///
/// The UID is checked separately from the QoS so a pod whose UID is not a UUID
/// (static pods use a 32-hex config hash) still reports its QoS class.
fn pod_segment(ancestors: &[&str], seg: &str) -> Option<(Option<String>, QosClass)> {
    if let Some(unit) = seg.strip_suffix(".slice") {
        // systemd: `[<parent>-]kubepods[-<qos>]-pod<uid_>.slice`. The UID uses `_`,
        // so the last `-pod` is the level separator.
        let (levels, uid) = unit.rsplit_once("-pod")?;
        let mut levels = levels.split('-');
        let qos = match levels.next_back()? {
            "kubepods" => QosClass::Guaranteed,
            "burstable" => QosClass::Burstable,
            "besteffort" => QosClass::BestEffort,
            _ => return None,
        };
        if qos != QosClass::Guaranteed && levels.next_back() != Some("kubepods") {
            return None;
        }
        // A `-` inside the UID would be a level separator, so such a name is malformed.
        let uid = Some(uid)
            .filter(|u| !u.contains('-'))
            .map(|u| u.replace('_', "-"));
        return Some((uid.filter(|u| is_uuid(u)), qos));
    }
    // cgroupfs: `kubepods/pod<uid>` or `kubepods/<qos>/pod<uid>`.
    let uid = seg.strip_prefix("pod")?;
    let qos = match ancestors {
        [.., "kubepods"] => QosClass::Guaranteed,
        [.., "kubepods", "burstable"] => QosClass::Burstable,
        [.., "kubepods", "besteffort"] => QosClass::BestEffort,
        _ => return None,
    };
    Some((is_uuid(uid).then(|| uid.to_owned()), qos))
}

/// The kubelet's root cgroup: `kubepods` (cgroupfs) or a `kubepods` slice level.
fn is_kubepods(seg: &str) -> bool {
    seg == "kubepods"
        || seg
            .strip_suffix(".slice")
            .is_some_and(|unit| unit.split('-').any(|l| l == "kubepods"))
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// 8-4-4-4-12 hex digits, as Kubernetes generates pod UIDs.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::Driver::*;
    use super::QosClass::*;
    use super::Runtime::*;
    use super::*;

    const ID: &str = "3f2a9c0d41b7e85f6a1c2d3e4f5061728394a5b6c7d8e9f00112233445566778";
    const ID2: &str = "9e8d7c6b5a49382716051f2e3d4c5b6a79880716a5b4c3d2e1f0011223344556";
    const UID: &str = "1f8e2c3a-4b5d-4e6f-8a9b-0c1d2e3f4a5b";
    const UID_: &str = "1f8e2c3a_4b5d_4e6f_8a9b_0c1d2e3f4a5b";
    const ALL_QOS: [QosClass; 3] = [Guaranteed, Burstable, BestEffort];

    /// Asserts `path` parses to container `ID`, with pod `UID` exactly when `qos` is set.
    #[track_caller]
    fn check(path: &str, runtime: Runtime, driver: Driver, qos: Option<QosClass>) {
        let pod_uid = qos.map(|_| UID.to_owned());
        let want = ContainerInfo {
            runtime,
            driver,
            id: ID.to_owned(),
            pod_uid,
            qos,
        };
        assert_eq!(parse(path), Some(want), "{path}");
    }

    fn systemd_pod(qos: QosClass) -> String {
        match qos {
            Guaranteed => format!("/kubepods.slice/kubepods-pod{UID_}.slice"),
            Burstable => format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"
            ),
            BestEffort => format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"
            ),
        }
    }

    fn cgroupfs_pod(qos: QosClass) -> String {
        match qos {
            Guaranteed => format!("/kubepods/pod{UID}"),
            Burstable => format!("/kubepods/burstable/pod{UID}"),
            BestEffort => format!("/kubepods/besteffort/pod{UID}"),
        }
    }

    #[test]
    fn kubelet_systemd_driver_containerd_crio_dockershim() {
        for qos in ALL_QOS {
            let pod = systemd_pod(qos);
            let p = format!("{pod}/cri-containerd-{ID}.scope");
            check(&p, Containerd, Systemd, Some(qos));
            check(&format!("{pod}/crio-{ID}.scope"), CriO, Systemd, Some(qos));
            check(
                &format!("{pod}/docker-{ID}.scope"),
                Docker,
                Systemd,
                Some(qos),
            );
        }
    }

    #[test]
    fn kubelet_cgroupfs_driver_containerd_crio() {
        for qos in ALL_QOS {
            let pod = cgroupfs_pod(qos);
            // Bare ids are containerd or dockershim; containerd is assumed.
            check(&format!("{pod}/{ID}"), Containerd, Cgroupfs, Some(qos));
            check(&format!("{pod}/crio-{ID}"), CriO, Cgroupfs, Some(qos));
        }
    }

    #[test]
    fn literal_systemd_pod_uid_is_converted_to_dashes() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f8e2c3a_4b5d_4e6f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-{ID}.scope"
        );
        let uid = parse(&path).and_then(|c| c.pod_uid);
        assert_eq!(uid.as_deref(), Some("1f8e2c3a-4b5d-4e6f-8a9b-0c1d2e3f4a5b"));
    }

    #[test]
    fn docker_and_podman_outside_kubernetes() {
        let p = format!("/system.slice/docker-{ID}.scope");
        check(&p, Docker, Systemd, None);
        check(&format!("/docker/{ID}"), Docker, Cgroupfs, None);
        let p = format!("/machine.slice/libpod-{ID}.scope");
        check(&p, Podman, Systemd, None);
        let p = format!("/libpod_parent/libpod-{ID}");
        check(&p, Podman, Cgroupfs, None);
        let p =
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope");
        check(&p, Podman, Systemd, None);
    }

    #[test]
    fn proc_cgroup_line_is_accepted() {
        let p = format!("0::/system.slice/docker-{ID}.scope\n");
        check(&p, Docker, Systemd, None);
    }

    #[test]
    fn nested_cgroups_map_to_the_container() {
        let p = format!(
            "{}/cri-containerd-{ID}.scope/init.scope",
            systemd_pod(Burstable)
        );
        check(&p, Containerd, Systemd, Some(Burstable));
        let p = format!("{}/{ID}/sub", cgroupfs_pod(BestEffort));
        check(&p, Containerd, Cgroupfs, Some(BestEffort));
        check(&format!("/docker/{ID}/a/b"), Docker, Cgroupfs, None);
    }

    #[test]
    fn deepest_container_segment_wins() {
        // docker-in-docker inside a pod: the inner container is where the process runs.
        let path = format!("{}/{ID2}/docker/{ID}", cgroupfs_pod(Guaranteed));
        check(&path, Docker, Cgroupfs, Some(Guaranteed));
    }

    #[test]
    fn dotdot_and_empty_segments_are_skipped() {
        let path = format!("/../../kubepods.slice/kubepods-pod{UID_}.slice//crio-{ID}.scope");
        check(&path, CriO, Systemd, Some(Guaranteed));
        check(&format!("../docker/./{ID}/"), Docker, Cgroupfs, None);
    }

    #[test]
    fn kind_style_kubelet_slice_prefix() {
        let path = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        check(&path, Containerd, Systemd, Some(BestEffort));
    }

    #[test]
    fn non_containers_are_none() {
        let cases = [
            String::new(),
            "/".to_owned(),
            "0::/".to_owned(),
            "/init.scope".to_owned(),
            "/system.slice/containerd.service".to_owned(),
            "/user.slice/user-1000.slice/session-3.scope".to_owned(),
            systemd_pod(Burstable),
            systemd_pod(Guaranteed),
            cgroupfs_pod(BestEffort),
            format!("{}/crio-conmon-{ID}.scope", systemd_pod(Burstable)),
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!("/system.slice/docker-{}.scope", &ID[..63]),
            format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
            format!("/system.slice/docker-{ID}.scope.bak"),
            format!("/system.slice/docker-{ID}0.scope"),
            format!("{}/{}", cgroupfs_pod(Burstable), &ID[..63]),
            format!("{}/{}", cgroupfs_pod(Burstable), ID.to_uppercase()),
            // A bare id outside kubepods or docker's parent is not attributable.
            format!("/system.slice/{ID}"),
            format!("/docker/pod{UID}/{ID}"),
            format!("/docker-{ID}"),
        ];
        for path in cases {
            assert_eq!(parse(&path), None, "{path:?}");
        }
    }

    #[test]
    fn pod_info_only_under_kubepods() {
        let p = format!("/system.slice/pod{UID}/docker-{ID}.scope");
        check(&p, Docker, Systemd, None);
        let path = format!("/other.slice/other-burstable-pod{UID_}.slice/crio-{ID}.scope");
        check(&path, CriO, Systemd, None);
    }

    #[test]
    fn malformed_pod_uid_keeps_qos_but_not_uid() {
        // Static pods use a 32-hex config hash as UID; the rest are malformed.
        let bad = [
            "6d33ef5a2a2f8bb8bcb0e0a8a1f0e3a7",
            "1f8e2c3a_4b5d",
            "1f8e2c3a-4b5d_4e6f_8a9b_0c1d2e3f4a5b",
        ];
        for uid in bad {
            let paths = [
                format!("/kubepods.slice/kubepods-pod{uid}.slice/crio-{ID}.scope"),
                format!("/kubepods/pod{uid}/crio-{ID}"),
            ];
            for path in paths {
                let got = parse(&path).expect("container");
                assert_eq!((got.pod_uid, got.qos), (None, Some(Guaranteed)), "{path}");
            }
        }
    }

    #[test]
    fn garbage_does_not_panic() {
        let deep = "a/".repeat(10_000) + &format!("docker-{ID}.scope");
        check(&deep, Docker, Systemd, None);
        assert_eq!(parse(&"/".repeat(100_000)), None);
        assert_eq!(parse(&"../".repeat(50_000)), None);
        assert_eq!(parse(&format!("/system.slice/docker-{ID}\0.scope")), None);
        assert_eq!(parse("\0\0/kubepods/\0/pod\0/\0"), None);
        let junk: String = (0..200_000u32)
            .map(|i| char::from_u32(i % 0x2ff).unwrap_or('x'))
            .collect();
        assert_eq!(parse(&junk), None);
        // Multi-byte characters where prefixes are stripped and lengths counted.
        assert_eq!(
            parse("/kubepods.slice/kubepods-pod\u{e9}\u{1f600}.slice/crio-\u{e9}.scope"),
            None
        );
        let (uid, id) = ("\u{e9}".repeat(18), "\u{e9}".repeat(32));
        assert_eq!(parse(&format!("/kubepods/pod{uid}/{id}")), None);
    }
}
