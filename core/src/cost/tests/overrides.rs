//! The override file: documented example, precedence, errors that name the
//! line and field, and no panic on any input.
use super::Lcg;
use crate::cost::{
    Arch, Lifecycle, PriceTable, Verification,
    overrides::{EXAMPLE, OverridePrice, parse},
};

const HEADER: &str = "instance_type,region,usd_per_hour,lifecycle,arch,vcpus,memory_gib,usd_per_vcpu_hour,usd_per_gb_hour,note";

fn error(text: &str) -> String {
    parse(text)
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn the_documented_example_parses_and_takes_precedence() {
    let o = parse(EXAMPLE).unwrap();
    assert_eq!(o.rows.len(), 4);
    assert_eq!(o.rows[0].line, 3);
    let t = o.apply(PriceTable::embedded()).unwrap();
    // A savings-plan rate replaces the embedded on-demand price...
    let od = t
        .price("m6i.xlarge", "us-east-1", Lifecycle::OnDemand)
        .unwrap();
    assert_eq!(od.usd_per_hour, 0.1210);
    assert_eq!(
        (od.verification, od.source.as_str()),
        (Verification::Override, "override line 3")
    );
    // ...an explicit spot price replaces on-demand × fraction...
    let spot = t.price("m6i.xlarge", "us-east-1", Lifecycle::Spot).unwrap();
    assert_eq!(spot.usd_per_hour, 0.07);
    // ...a region the table lacks is added, shape from the row...
    let sa = t
        .price("m7g.large", "sa-east-1", Lifecycle::OnDemand)
        .unwrap();
    assert_eq!(
        (sa.usd_per_hour, sa.arch, sa.vcpus, sa.memory_gib),
        (0.1307, Arch::Arm64, 2, 8.0)
    );
    // ...and a Fargate rate replaces the estimated one.
    let f = t.fargate("eu-central-1", Arch::X86_64).unwrap();
    assert_eq!(
        (f.usd_per_vcpu_hour, f.usd_per_gib_hour, f.verification),
        (0.04656, 0.00511, Verification::Override)
    );
    // Everything else is untouched.
    assert_eq!(
        t.price("m6i.large", "us-east-1", Lifecycle::OnDemand),
        PriceTable::embedded().price("m6i.large", "us-east-1", Lifecycle::OnDemand)
    );
}

#[test]
fn minimal_files_and_shape_inheritance() {
    // Only the required columns plus the price; a type the table knows in
    // another region inherits its shape.
    let o = parse("instance_type,region,usd_per_hour\nc7g.xlarge,sa-east-1,0.19\n").unwrap();
    let t = o.apply(PriceTable::embedded()).unwrap();
    let p = t
        .price("c7g.xlarge", "sa-east-1", Lifecycle::OnDemand)
        .unwrap();
    assert_eq!((p.vcpus, p.memory_gib, p.arch), (4, 8.0, Arch::Arm64));
    // Columns in any order, upper case, whitespace, CRLF, a BOM.
    let o =
        parse("\u{feff}Region , USD_PER_HOUR,Instance_Type\r\n  us-east-1 , 0.05 , M6G.Large \r\n")
            .unwrap();
    match &o.rows[0].price {
        OverridePrice::Ec2 {
            instance_type,
            region,
            usd_per_hour,
            lifecycle,
            ..
        } => {
            assert_eq!(
                (
                    instance_type.as_str(),
                    region.as_str(),
                    *usd_per_hour,
                    *lifecycle
                ),
                ("m6g.large", "us-east-1", 0.05, Lifecycle::OnDemand)
            );
        }
        other => panic!("{other:?}"),
    }
    // An empty file (or only comments) has no header.
    assert!(parse("").is_err());
    assert!(parse("# nothing\n\n").is_err());
    // A header alone is fine: no overrides.
    assert!(parse(HEADER).unwrap().rows.is_empty());
}

#[test]
fn errors_name_the_line_and_the_field() {
    let body = |rows: &str| {
        format!("# line 1\n# line 2\n\n{HEADER}\n# line 5\nm6i.large,us-east-1,0.1,,,,,,,\n{rows}")
    };
    assert_eq!(
        error(&body("m6i.xlarge,us-east-1,abc,,,,,,,\n")),
        "line 7, field usd_per_hour: not a number: 'abc'"
    );
    assert_eq!(
        error(&body("m6i.xlarge,us-east-1,-1,,,,,,,\n")),
        "line 7, field usd_per_hour: -1 is outside 0..=1000"
    );
    assert_eq!(
        error(&body("m6i.xlarge,us-east-1,NaN,,,,,,,\n")),
        "line 7, field usd_per_hour: not a finite number: 'NaN'"
    );
    assert_eq!(
        error(&body("m6i.xlarge,us-east-1,inf,,,,,,,\n")),
        "line 7, field usd_per_hour: not a finite number: 'inf'"
    );
    assert_eq!(
        error(&body("m6i.xlarge,us-east-1,,,,,,,,\n")),
        "line 7, field usd_per_hour: required, but empty"
    );
    assert_eq!(
        error(&body("m6i.xlarge,us-east-1a,0.2,,,,,,,\n")),
        "line 7, field region: 'us-east-1a' is a zone; give its region, us-east-1"
    );
    assert_eq!(
        error(&body("m6i.xlarge,mars,0.2,,,,,,,\n")),
        "line 7, field region: not a region like eu-west-1: 'mars'"
    );
    assert_eq!(
        error(&body("m6i xlarge,us-east-1,0.2,,,,,,,\n")),
        "line 7, field instance_type: not an instance type like m6i.xlarge (or fargate): 'm6i xlarge'"
    );
    assert_eq!(
        error(&body("m6i.xlarge,us-east-1,0.2,reserved,,,,,,\n")),
        "line 7, field lifecycle: not on-demand or spot: 'reserved'"
    );
    assert_eq!(
        error(&body("m6i.xlarge,us-east-1,0.2,,sparc,,,,,\n")),
        "line 7, field arch: not x86_64 or arm64: 'sparc'"
    );
    assert_eq!(
        error(&body("m6i.xlarge,us-east-1,0.2,,,2.5,,,,\n")),
        "line 7, field vcpus: not a whole number: 2.5"
    );
    assert_eq!(
        error(&body("m6i.xlarge,us-east-1,0.2,,,,,0.1,,\n")),
        "line 7, field usd_per_vcpu_hour: only fargate rows have this rate"
    );
    assert_eq!(
        error(&body("m6i.large,us-east-1,0.2,on-demand,,,,,,\n")),
        "line 7, field instance_type: this price was already given on line 6"
    );
    assert_eq!(
        error(&body("m6i.xlarge,us-east-1,0.2\n")),
        "line 7: expected 10 fields (instance_type,region,usd_per_hour,lifecycle,arch,vcpus,memory_gib,usd_per_vcpu_hour,usd_per_gb_hour,note), found 3"
    );
    assert_eq!(
        error(&body("fargate,us-east-1,0.2,,,,,0.04,0.004,\n")),
        "line 7, field usd_per_hour: must be empty on a fargate row"
    );
    assert_eq!(
        error(&body("fargate,us-east-1,,,,,,0.04,,\n")),
        "line 7, field usd_per_gb_hour: required, but empty"
    );
    assert_eq!(
        error("instance_type,region,price\n"),
        "line 1, field price: unknown column; known columns are instance_type, region, usd_per_hour, lifecycle, arch, vcpus, memory_gib, usd_per_vcpu_hour, usd_per_gb_hour, note"
    );
    assert_eq!(
        error("instance_type,usd_per_hour\n"),
        "line 1: header lacks the required column region"
    );
    assert_eq!(
        error("instance_type,region,region\n"),
        "line 1, field region: column named twice"
    );
    assert_eq!(
        error("instance_type,region\nfargate,us-east-1\n"),
        "line 2, field usd_per_vcpu_hour: required for this row, but the header lacks the column"
    );
    let long = format!("{HEADER}\n{}\n", "x".repeat(5000));
    assert_eq!(error(&long), "line 2: longer than 4096 characters");
    // Control characters are escaped in messages.
    assert_eq!(
        error(&body("m6i.xlarge,us-east-1,\u{1b}[31m,,,,,,,\n")),
        "line 7, field usd_per_hour: not a number: '\\u{1b}[31m'"
    );
}

#[test]
fn apply_errors_name_the_line() {
    // A type no region knows needs its shape.
    let o = parse("instance_type,region,usd_per_hour\nx9z.large,us-east-1,0.2\n").unwrap();
    assert_eq!(
        o.apply(PriceTable::embedded()).unwrap_err().to_string(),
        "line 2, field vcpus: required: the embedded table does not know x9z.large in any region"
    );
    let o = parse("instance_type,region,usd_per_hour,vcpus\nx9z.large,us-east-1,0.2,2\n").unwrap();
    assert_eq!(
        o.apply(PriceTable::embedded()).unwrap_err().to_string(),
        "line 2, field memory_gib: required: the embedded table does not know x9z.large in any region"
    );
    // A spot price needs an on-demand price to sit beside.
    let o = parse("instance_type,region,usd_per_hour,lifecycle\nm6i.large,sa-east-1,0.03,spot\n")
        .unwrap();
    assert!(
        o.apply(PriceTable::embedded())
            .unwrap_err()
            .to_string()
            .starts_with("line 2, field lifecycle: a spot price for m6i.large in sa-east-1")
    );
    // ...which may come on a later line.
    let o = parse("instance_type,region,usd_per_hour,lifecycle\nm6i.large,sa-east-1,0.03,spot\nm6i.large,sa-east-1,0.12,on-demand\n").unwrap();
    let t = o.apply(PriceTable::embedded()).unwrap();
    assert_eq!(
        t.price("m6i.large", "sa-east-1", Lifecycle::Spot)
            .unwrap()
            .usd_per_hour,
        0.03
    );
    assert_eq!(
        t.price("m6i.large", "sa-east-1", Lifecycle::OnDemand)
            .unwrap()
            .usd_per_hour,
        0.12
    );
}

#[test]
fn garbage_never_panics() {
    let mut rng = Lcg(42);
    let alphabet: Vec<char> =
        "abcdefghijklmnopqrstuvwxyz0123456789.,-_ #\n\r\t\"'é\u{0}\u{feff}fargatespotNaNinf1e309"
            .chars()
            .collect();
    for _ in 0..3000 {
        let len = (rng.next_u64() % 300) as usize;
        let text: String = (0..len)
            .map(|_| alphabet[(rng.next_u64() as usize) % alphabet.len()])
            .collect();
        let _ = parse(&text).map(|o| o.apply(PriceTable::embedded()));
        let with_header = format!("{HEADER}\n{text}");
        let _ = parse(&with_header).map(|o| o.apply(PriceTable::embedded()));
    }
    // Mutations of a valid file: every byte position deleted or replaced.
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    for (i, _) in EXAMPLE.char_indices() {
        let mut cut = EXAMPLE.to_string();
        cut.remove(i);
        let _ = parse(&cut).map(|o| o.apply(PriceTable::embedded()));
        let mut swapped = EXAMPLE.to_string();
        swapped.replace_range(i..i + EXAMPLE[i..].chars().next().unwrap().len_utf8(), ",");
        let _ = parse(&swapped).map(|o| o.apply(PriceTable::embedded()));
    }
    assert!(lines.len() > 3);
    // Raw bytes, decoded lossily, as a file read from disk would be.
    for _ in 0..500 {
        let bytes: Vec<u8> = (0..(rng.next_u64() % 200))
            .map(|_| rng.next_u64() as u8)
            .collect();
        let _ = parse(&String::from_utf8_lossy(&bytes));
    }
}
