//! The embedded price table: it parses, covers what it promises, and its
//! figures hang together.
use std::collections::BTreeMap;

use crate::cost::{
    Arch, Lifecycle, PriceTable, TableError, Verification,
    prices::{DEFAULT_SPOT_FRACTION, region_of_zone},
};

const FAMILIES: &[&str] = &[
    "m6i", "m7i", "c6i", "c7i", "r6i", "r7i", "t3", "m6g", "m7g", "c6g", "c7g", "r6g", "r7g", "t4g",
];
const REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-west-1",
    "eu-west-2",
    "eu-central-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "ap-south-1",
];

fn sizes(family: &str) -> &'static [&'static str] {
    match family {
        "t3" | "t4g" => &["micro", "small", "medium", "large", "xlarge", "2xlarge"],
        f if f.ends_with('g') => &["medium", "large", "xlarge", "2xlarge", "4xlarge"],
        _ => &["large", "xlarge", "2xlarge", "4xlarge"],
    }
}

#[test]
fn embedded_data_parses_with_version_and_date() {
    let t = PriceTable::parse_embedded().expect("embedded price data must parse");
    assert_eq!(t.version(), "2026-07-20.1");
    assert_eq!(t.as_of(), "2026-07-20");
    assert_eq!(t.entries().count(), 660);
    assert_eq!(t.spot_fraction(), DEFAULT_SPOT_FRACTION);
    assert_eq!(PriceTable::embedded(), &t);
}

#[test]
fn every_promised_family_size_and_region_is_priced() {
    let t = PriceTable::embedded();
    for family in FAMILIES {
        for size in sizes(family) {
            for region in REGIONS {
                let name = format!("{family}.{size}");
                let p = t
                    .price(&name, region, Lifecycle::OnDemand)
                    .unwrap_or_else(|| panic!("{name} {region} missing"));
                assert!(p.usd_per_hour > 0.001 && p.usd_per_hour < 2.0, "{p}");
                let arch = if family.ends_with('g') {
                    Arch::Arm64
                } else {
                    Arch::X86_64
                };
                assert_eq!(p.arch, arch, "{name}");
            }
        }
    }
    assert_eq!(t.regions(), {
        let mut r = REGIONS.to_vec();
        r.sort_unstable();
        r
    });
}

#[test]
fn shapes_follow_the_families() {
    let t = PriceTable::embedded();
    for e in t.entries() {
        let family = e.instance_type.split('.').next().unwrap();
        let per_vcpu = e.memory_gib / f64::from(e.vcpus);
        match &family[..1] {
            "c" => assert_eq!(per_vcpu, 2.0, "{}", e.instance_type),
            "m" => assert_eq!(per_vcpu, 4.0, "{}", e.instance_type),
            "r" => assert_eq!(per_vcpu, 8.0, "{}", e.instance_type),
            _ => {}
        }
    }
    assert_eq!(t.shape("t3.micro"), Some((Arch::X86_64, 2, 1.0)));
    assert_eq!(t.shape("t4g.small"), Some((Arch::Arm64, 2, 2.0)));
    assert_eq!(t.shape("t3.2xlarge"), Some((Arch::X86_64, 8, 32.0)));
    assert_eq!(t.shape("r7g.medium"), Some((Arch::Arm64, 1, 8.0)));
    assert_eq!(t.shape("m6i.4xlarge"), Some((Arch::X86_64, 16, 64.0)));
}

#[test]
fn known_prices_from_the_sources() {
    let t = PriceTable::embedded();
    let od = |ty: &str, r: &str| t.price(ty, r, Lifecycle::OnDemand).unwrap().usd_per_hour;
    // us-east-1, from Karpenter's 2026-07-20 snapshot of the AWS Price List.
    assert_eq!(od("m6i.large", "us-east-1"), 0.096);
    assert_eq!(od("m7g.large", "us-east-1"), 0.0816);
    assert_eq!(od("c7i.large", "us-east-1"), 0.08925);
    assert_eq!(od("t3.micro", "us-east-1"), 0.0104);
    assert_eq!(od("r7i.2xlarge", "us-east-1"), 0.5292);
    // Other regions, from the SkyPilot catalog.
    assert_eq!(od("m7g.large", "eu-west-1"), 0.091);
    assert_eq!(od("m6i.large", "eu-central-1"), 0.115);
    assert_eq!(od("c7g.large", "us-east-2"), 0.0723); // not us-east-1's 0.0725
    assert_eq!(od("c6g.4xlarge", "eu-west-1"), 0.5837); // not 4 × 0.1459
    assert_eq!(od("t4g.micro", "ap-south-1"), 0.0056);
    let e = t.entry("c7g.large", "us-east-2").unwrap();
    assert_eq!(
        (e.verification, e.source.as_str()),
        (Verification::Verified, "skypilot")
    );
    let e = t.entry("m6i.xlarge", "us-east-1").unwrap();
    assert_eq!(
        (e.verification, e.source.as_str()),
        (Verification::Verified, "karpenter")
    );
}

#[test]
fn us_east_1_is_fully_verified_and_derived_rows_are_few_and_linear() {
    let t = PriceTable::embedded();
    let mut derived = 0;
    for e in t.entries() {
        if e.region == "us-east-1" {
            assert_eq!(
                e.verification,
                Verification::Verified,
                "{}",
                e.instance_type
            );
        }
        if e.verification == Verification::Derived {
            derived += 1;
        }
        assert_ne!(e.verification, Verification::Override);
    }
    assert_eq!(derived, 192);
    // Within a family and region the price per vCPU-equivalent is the same
    // for every size (to the rounding of the last digit), derived or not.
    let mut per_unit: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for e in t.entries() {
        let family = e.instance_type.split('.').next().unwrap().to_string();
        per_unit
            .entry((family, e.region.clone()))
            .or_default()
            .push(e.on_demand_usd_per_hour / e.memory_gib);
    }
    for ((family, region), units) in per_unit {
        let (lo, hi) = units
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &u| (lo.min(u), hi.max(u)));
        assert!((hi - lo) / lo < 0.005, "{family} {region}: {lo}..{hi}");
    }
}

#[test]
fn sizes_cost_more_than_smaller_sizes_and_graviton_is_cheaper() {
    let t = PriceTable::embedded();
    for family in FAMILIES {
        for region in REGIONS {
            let prices: Vec<f64> = sizes(family)
                .iter()
                .map(|s| {
                    t.price(&format!("{family}.{s}"), region, Lifecycle::OnDemand)
                        .unwrap()
                        .usd_per_hour
                })
                .collect();
            assert!(
                prices.windows(2).all(|w| w[0] < w[1]),
                "{family} {region}: {prices:?}"
            );
        }
    }
    for region in REGIONS {
        for (x86, arm) in [
            ("m6i.large", "m6g.large"),
            ("c6i.xlarge", "c6g.xlarge"),
            ("r6i.2xlarge", "r6g.2xlarge"),
        ] {
            let (a, b) = (
                t.price(x86, region, Lifecycle::OnDemand)
                    .unwrap()
                    .usd_per_hour,
                t.price(arm, region, Lifecycle::OnDemand)
                    .unwrap()
                    .usd_per_hour,
            );
            assert!(b < a, "{region}: {arm} {b} !< {x86} {a}");
        }
    }
}

#[test]
fn spot_is_on_demand_times_the_fraction() {
    let t = PriceTable::embedded();
    let od = t
        .price("m6i.large", "us-east-1", Lifecycle::OnDemand)
        .unwrap();
    let spot = t.price("m6i.large", "us-east-1", Lifecycle::Spot).unwrap();
    assert!((spot.usd_per_hour - 0.096 * 0.40).abs() < 1e-12);
    assert_eq!(spot.on_demand_usd_per_hour, od.usd_per_hour);
    assert!(
        spot.source.contains("spot fraction 0.40"),
        "{}",
        spot.source
    );
    let t = t.clone().with_spot_fraction(0.3).unwrap();
    let spot = t.price("m6i.large", "us-east-1", Lifecycle::Spot).unwrap();
    assert!((spot.usd_per_hour - 0.0288).abs() < 1e-12);
    for bad in [0.0, -0.1, 1.01, f64::NAN, f64::INFINITY] {
        assert!(t.clone().with_spot_fraction(bad).is_err(), "{bad}");
    }
    assert!(t.clone().with_spot_fraction(1.0).is_ok());
}

#[test]
fn lookups_are_lenient_about_case_zones_and_labels() {
    let t = PriceTable::embedded();
    let a = t
        .price(" M6I.Large ", "US-EAST-1", Lifecycle::OnDemand)
        .unwrap();
    let b = t
        .price("m6i.large", "us-east-1c", Lifecycle::OnDemand)
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.region, "us-east-1");
    assert!(
        t.price("m6i.large", "mars-north-1", Lifecycle::OnDemand)
            .is_none()
    );
    assert!(
        t.price("m9z.huge", "us-east-1", Lifecycle::OnDemand)
            .is_none()
    );
    assert!(t.price("", "", Lifecycle::Spot).is_none());
    assert_eq!(t.instances_in("eu-west-1b").count(), 66);
    assert_eq!(region_of_zone("us-east-1a"), Some("us-east-1"));
    assert_eq!(region_of_zone("us-east-1"), None);
    assert_eq!(region_of_zone(""), None);
    assert_eq!(region_of_zone("é"), None);
    for (label, want) in [
        ("ON_DEMAND", Lifecycle::OnDemand),
        ("on-demand", Lifecycle::OnDemand),
        ("SPOT", Lifecycle::Spot),
        ("spot", Lifecycle::Spot),
        ("normal", Lifecycle::OnDemand),
    ] {
        assert_eq!(Lifecycle::parse(label), Some(want), "{label}");
    }
    assert_eq!(Lifecycle::parse("reserved"), None);
    assert_eq!(Arch::parse("amd64"), Some(Arch::X86_64));
    assert_eq!(Arch::parse("AArch64"), Some(Arch::Arm64));
    assert_eq!(Arch::parse("riscv64"), None);
}

#[test]
fn fargate_rates() {
    let t = PriceTable::embedded();
    let x86 = t.fargate("us-east-1", Arch::X86_64).unwrap();
    assert_eq!(
        (x86.usd_per_vcpu_hour, x86.usd_per_gib_hour),
        (0.04048, 0.004445)
    );
    assert_eq!(x86.verification, Verification::Verified);
    let arm = t.fargate("us-east-1a", Arch::Arm64).unwrap();
    assert_eq!(
        (arm.usd_per_vcpu_hour, arm.usd_per_gib_hour),
        (0.03238, 0.00356)
    );
    for region in [
        "us-east-1",
        "us-east-2",
        "us-west-2",
        "eu-west-1",
        "eu-central-1",
        "ap-southeast-1",
        "ap-northeast-1",
    ] {
        let x = t
            .fargate(region, Arch::X86_64)
            .unwrap_or_else(|| panic!("{region}"));
        let a = t.fargate(region, Arch::Arm64).unwrap();
        // Graviton is 20% cheaper, to the rounding of the published rates.
        assert!(
            (a.usd_per_vcpu_hour / x.usd_per_vcpu_hour - 0.8).abs() < 0.001,
            "{region}"
        );
        assert!(
            (a.usd_per_gib_hour / x.usd_per_gib_hour - 0.8).abs() < 0.002,
            "{region}"
        );
        if region != "us-east-1" {
            assert_eq!(x.verification, Verification::Estimated, "{region}");
        }
    }
    assert!(t.fargate("sa-east-1", Arch::X86_64).is_none());
}

#[test]
fn malformed_tables_are_rejected_with_line_and_field() {
    let header = "instance_type,region,arch,vcpus,memory_gib,usd_per_hour,verified,source,note\n";
    let fargate = "region,arch,usd_per_vcpu_hour,usd_per_gb_hour,verified,source,note\n";
    let ok = format!("{header}m6i.large,us-east-1,x86_64,2,8,0.096,yes,karpenter,\n");
    assert!(PriceTable::parse(&ok, fargate).is_ok());
    let cases = [
        (
            format!("# c\n{header}m6i.large,us-east-1,x86_64,2,8,abc,yes,karpenter,\n"),
            3,
            Some("usd_per_hour"),
        ),
        (
            format!("{header}m6i.large,us-east-1,sparc,2,8,0.1,yes,karpenter,\n"),
            2,
            Some("arch"),
        ),
        (
            format!("{header}m6i.large,us-east-1,x86_64,2.5,8,0.1,yes,karpenter,\n"),
            2,
            Some("vcpus"),
        ),
        (
            format!("{header}m6i.large,us-east-1,x86_64,2,8,0.1,maybe,karpenter,\n"),
            2,
            Some("verified"),
        ),
        (
            format!("{header}m6i.large,us-east-1,x86_64,2,8,0.1,yes\n"),
            2,
            None,
        ),
        (
            format!(
                "{header}m6i.large,us-east-1,x86_64,2,8,0.1,yes,k,\nm6i.large,us-east-1,x86_64,2,8,0.1,yes,k,\n"
            ),
            3,
            Some("instance_type"),
        ),
    ];
    for (text, line, field) in cases {
        let err = PriceTable::parse(&text, fargate).unwrap_err();
        assert_eq!(err.line(), Some(line), "{err}");
        assert_eq!(err.field(), field, "{err}");
    }
    assert_eq!(
        PriceTable::parse("# only a comment\n", fargate).unwrap_err(),
        TableError::NoHeader
    );
}
