fn main() -> anyhow::Result<()> {
    let mut p = agent::probes::Probes::load(&Default::default())?;
    for m in &p.missing { eprintln!("warn: {}", m.warning()); }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let t = p.threads()?;
    let mut n = 0; for r in t.iter() { let (k,v) = r?; if n < 5 { println!("tid {k} {:?} samples {}", String::from_utf8_lossy(&v.comm), v.samples);} n+=1; }
    println!("threads {n}");
    let pr = p.procs()?;
    for r in pr.iter() { let (k,v) = r?; println!("tgid {k} {:?}", v); }
    println!("drops {:?}", p.drops()?);
    let mut ev = p.take_events()?;
    while let Some(item) = ev.next() { println!("event {:?}", agent::probes::parse_event(&item)); }
    Ok(())
}
