//! Node's V8 heap flags, from `NODE_OPTIONS` and then the command line
//! (which wins: Node applies `NODE_OPTIONS` first). V8 takes `-` and `_`
//! alike in flag names.
use serde::Serialize;

use super::{ProcessText, Setting, Source, part};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeSettings {
    /// `--max-old-space-size`, MiB; `None` when not set (V8 then sizes the
    /// old space from the memory it sees).
    pub max_old_space_mib: Option<Setting<u64>>,
    /// `--max-semi-space-size`, MiB.
    pub max_semi_space_mib: Option<Setting<u64>>,
}

impl NodeSettings {
    pub fn parse(text: ProcessText<'_>) -> NodeSettings {
        let mut s = NodeSettings::default();
        if let Some(options) = text.env("NODE_OPTIONS") {
            let options: Vec<&str> = options.split_whitespace().collect();
            s.apply_all(&options, Source::Env);
        }
        let args = text.args();
        // Node's own options come before the script; the rest is the
        // script's.
        let options: Vec<&str> = args
            .iter()
            .skip(1)
            .map(String::as_str)
            .take_while(|a| a.starts_with('-'))
            .collect();
        s.apply_all(&options, Source::Flag);
        s
    }

    fn apply_all(&mut self, options: &[&str], source: Source) {
        for (i, opt) in options.iter().enumerate() {
            let normalized = opt.replace('_', "-");
            let (name, inline) = match normalized.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (normalized.clone(), None),
            };
            let slot = match name.as_str() {
                "--max-old-space-size" => &mut self.max_old_space_mib,
                "--max-semi-space-size" => &mut self.max_semi_space_mib,
                _ => continue,
            };
            let value = inline.or_else(|| options.get(i + 1).map(|v| (*v).to_owned()));
            if let Some(mib) = value.and_then(|v| v.parse::<u64>().ok()) {
                *slot = Some(Setting::new(mib, source));
            }
        }
    }

    pub(super) fn parts(&self) -> Vec<String> {
        let one = |name: &str, s: Option<Setting<u64>>| match s {
            Some(s) => part(format!("{name} {} MiB", s.value), s.source),
            None => format!("{name} not set (V8 default)"),
        };
        vec![
            one("--max-old-space-size", self.max_old_space_mib),
            one("--max-semi-space-size", self.max_semi_space_mib),
        ]
    }
}
